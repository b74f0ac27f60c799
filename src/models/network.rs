//! A whole network: the six stages of the body, the optional auxiliary head and the
//! classifier, with a forward pass and a per-stage account of shapes, parameters and MACs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{bail, DType, Result, Tensor};
use candle_nn::{BatchNormConfig, Linear, Module, ModuleT, VarBuilder};
use serde::Serialize;

use super::body::STAGE_NAMES;
use super::config::{Arch, ModelConfig, MIN_IMAGE_SIZE};
use super::dropout::seeded_dropout;
use super::fastops;
use super::layers::{Block, Chain, ConvBnAct, Cost, Ctx, FeatureShape, Padding, K1};
use super::pool::{Pool2d, PoolKind};
use super::{inception_resnet_v1, inception_resnet_v2, inception_v3, inception_v4};

/// The auxiliary head reads the output of this stage (the last 17x17 block).
const AUX_STAGE: usize = 3;

/// The auxiliary classifier (TF-slim `AuxLogits`, timm `AuxLogits`): avg 5/3 V → 1x1 128 →
/// 5x5 V 768 → global average → linear. On inputs smaller than 299 px the pooling and conv
/// kernels shrink to the feature map, as TF-slim's `_reduced_kernel_size_for_small_input`.
struct AuxHead {
    pool: Pool2d,
    conv0: ConvBnAct,
    conv1: ConvBnAct,
    fc: Linear,
}

impl AuxHead {
    fn new(ctx: &Ctx, input: FeatureShape, num_classes: usize) -> Result<Self> {
        let kernel = 5.min(input.h).min(input.w);
        let pool = Pool2d {
            kind: PoolKind::AvgExcludePad,
            kernel,
            stride: 3,
            padding: 0,
        };
        let pooled = pool
            .output_len(input.h.min(input.w))
            .expect("kernel fits by construction");
        let (c0, c1) = (ctx.ch(128), ctx.ch(768));
        let conv0 = ConvBnAct::new(&ctx.pp("conv0"), input.c, c0, K1, 1, Padding::Valid)?;
        let k1 = 5.min(pooled);
        let conv1 = ConvBnAct::new(&ctx.pp("conv1"), c0, c1, (k1, k1), 1, Padding::Valid)?;
        let fc = candle_nn::linear(c1, num_classes, ctx.vb.pp("fc"))?;
        Ok(Self {
            pool,
            conv0,
            conv1,
            fc,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.pool.forward(x)?;
        let x = self
            .conv1
            .forward_t(&self.conv0.forward_t(&x, train)?, train)?;
        self.fc.forward(&x.mean((2, 3))?)
    }

    fn trace(&self, s: FeatureShape, cost: &mut Cost) -> Result<()> {
        let s = Block::trace(&self.pool, s, cost)?;
        let s = self.conv1.trace(self.conv0.trace(s, cost)?, cost)?;
        let (out, inp) = self.fc.weight().dims2()?;
        *cost += Cost {
            params: (inp * out + out) as u64,
            macs: (inp * out) as u64,
        };
        debug_assert_eq!(inp, s.c);
        Ok(())
    }
}

/// Logits, and the auxiliary head's logits in training mode when the head is on.
pub struct NetworkOutput {
    pub logits: Tensor,
    pub aux_logits: Option<Tensor>,
    /// The last layer's output before the global average pooling, (N, C, H, W): the
    /// activations whose turning all zero the paper calls a network "dying" (section 3.3).
    pub pre_pool: Tensor,
}

/// Shape, parameters and MACs of one stage, for one image.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    pub name: String,
    pub output: FeatureShape,
    pub params: u64,
    pub macs: u64,
}

/// The account `repro models` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub name: String,
    pub image_size: usize,
    pub width: f64,
    pub num_classes: usize,
    pub params: u64,
    pub macs: u64,
    pub stages: Vec<StageSummary>,
}

pub struct Network {
    config: ModelConfig,
    /// Seed of the next training-mode dropout mask (see [`Network::set_dropout_seed`]).
    dropout_seed: AtomicU64,
    stages: Vec<Chain>,
    aux: Option<AuxHead>,
    classifier: Linear,
    /// What inference passes keep of their transforms of the weights; emptied by the other
    /// passes, so that training never holds it.
    kept: Arc<fastops::WeightCache>,
}

impl Network {
    /// Builds the network; its variables come from (or are created in) `vb`, named as timm's
    /// state dict names them.
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        if let Err(msg) = config.validate() {
            bail!("invalid model config: {msg}")
        }
        let ctx = Ctx {
            vb,
            width: config.width,
            bn: BatchNormConfig {
                eps: config.bn_eps,
                remove_mean: true,
                affine: true,
                momentum: config.bn_momentum,
            },
            avg_pool: config.avg_pool_padding().pool_kind(),
        };
        let body = match config.arch {
            Arch::InceptionV3 => inception_v3::body(&ctx, config)?,
            Arch::InceptionV4 => inception_v4::body(&ctx, config)?,
            Arch::InceptionResnetV1 => inception_resnet_v1::body(&ctx, config)?,
            Arch::InceptionResnetV2 => inception_resnet_v2::body(&ctx, config)?,
        };
        let input = FeatureShape {
            c: 3,
            h: config.image_size,
            w: config.image_size,
        };
        let shapes = trace_stages(&body.stages, input)?;
        let aux = if config.aux_head {
            Some(AuxHead::new(
                &ctx.pp("AuxLogits"),
                shapes[AUX_STAGE].0,
                config.num_classes,
            )?)
        } else {
            None
        };
        let features = body.stages.last().expect("six stages").channels();
        let classifier = candle_nn::linear(
            features,
            config.num_classes,
            ctx.vb.pp(config.arch.classifier_name()),
        )?;
        Ok(Self {
            config: config.clone(),
            dropout_seed: AtomicU64::new(0),
            stages: body.stages,
            aux,
            classifier,
            kept: Arc::default(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Sets the seed of the dropout mask of the next training-mode forward pass. The trainer
    /// derives it from the run's seed and the step, so that resumed runs repeat exactly.
    pub fn set_dropout_seed(&self, seed: u64) {
        self.dropout_seed.store(seed, Ordering::Relaxed);
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<NetworkOutput> {
        self.kept.clear();
        fastops::on_worker(|| self.forward_on_worker(x, train, train))
    }

    /// The eval-mode forward pass for inference: nothing in it is differentiated, so the ops
    /// that can skip candle's autograd graph do ([`fastops::inference_keeping`]), and the
    /// transforms of the weights some convolutions run on are kept for the next such pass
    /// (until a pass of another kind). The same outputs as `forward_t(x, false)`.
    pub fn infer(&self, x: &Tensor) -> Result<NetworkOutput> {
        fastops::on_worker(|| {
            fastops::inference_keeping(&self.kept, || self.forward_on_worker(x, false, false))
        })
    }

    /// How many transforms of the weights [`Self::infer`] keeps now.
    #[cfg(test)]
    pub(crate) fn kept_transforms(&self) -> usize {
        self.kept.len()
    }

    /// The logits with BatchNorm normalising by the batch's own statistics, without dropout
    /// or the auxiliary head: a diagnostic that separates the weights from the running
    /// statistics. The running statistics are updated as in training; callers that want them
    /// unchanged save and restore them.
    pub fn forward_batch_statistics(&self, x: &Tensor) -> Result<Tensor> {
        self.kept.clear();
        fastops::on_worker(|| self.forward_on_worker(x, true, false)).map(|out| out.logits)
    }

    fn forward_on_worker(&self, x: &Tensor, train: bool, dropout: bool) -> Result<NetworkOutput> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 || h < MIN_IMAGE_SIZE || w < MIN_IMAGE_SIZE {
            bail!(
                "{} expects images of shape (N, 3, H, W) with H, W >= {MIN_IMAGE_SIZE}, got {:?}",
                self.config.arch,
                x.dims()
            )
        }
        let mut y = x.clone();
        let mut aux_logits = None;
        for (i, stage) in self.stages.iter().enumerate() {
            y = fastops::fused(&y, train, |y| stage.forward_t(y, train))?;
            if let (true, Some(aux), AUX_STAGE) = (dropout, &self.aux, i) {
                aux_logits = Some(aux.forward_t(&y, train)?);
            }
        }
        let pre_pool = y;
        let mut pooled = pre_pool.mean((2, 3))?;
        if dropout && self.config.dropout > 0.0 {
            pooled = seeded_dropout(
                &pooled,
                self.config.dropout,
                self.dropout_seed.load(Ordering::Relaxed),
            )?;
        }
        Ok(NetworkOutput {
            logits: self.classifier.forward(&pooled)?,
            aux_logits,
            pre_pool,
        })
    }

    /// Shapes, parameters and MACs for one `image_size`² image.
    pub fn summary(&self, image_size: usize) -> Result<Summary> {
        let input = FeatureShape {
            c: 3,
            h: image_size,
            w: image_size,
        };
        let mut stages: Vec<StageSummary> = trace_stages(&self.stages, input)?
            .into_iter()
            .zip(STAGE_NAMES)
            .map(|((output, cost), name)| StageSummary {
                name: name.into(),
                output,
                params: cost.params,
                macs: cost.macs,
            })
            .collect();
        if let Some(aux) = &self.aux {
            let mut cost = Cost::default();
            aux.trace(stages[AUX_STAGE].output, &mut cost)?;
            stages.push(StageSummary {
                name: "aux_head".into(),
                output: FeatureShape {
                    c: self.config.num_classes,
                    h: 1,
                    w: 1,
                },
                params: cost.params,
                macs: cost.macs,
            });
        }
        let (out, inp) = self.classifier.weight().dims2()?;
        stages.push(StageSummary {
            name: "classifier".into(),
            output: FeatureShape { c: out, h: 1, w: 1 },
            params: (inp * out + out) as u64,
            macs: (inp * out) as u64,
        });
        Ok(Summary {
            name: self.config.arch.name().into(),
            image_size,
            width: self.config.width,
            num_classes: self.config.num_classes,
            params: stages.iter().map(|s| s.params).sum(),
            macs: stages.iter().map(|s| s.macs).sum(),
            stages,
        })
    }
}

impl ModuleT for Network {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(Network::forward_t(self, x, train)?.logits)
    }
}

fn trace_stages(stages: &[Chain], input: FeatureShape) -> Result<Vec<(FeatureShape, Cost)>> {
    let mut shape = input;
    stages
        .iter()
        .zip(STAGE_NAMES)
        .map(|(stage, name)| {
            let mut cost = Cost::default();
            shape = stage
                .trace(shape, &mut cost)
                .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?;
            Ok((shape, cost))
        })
        .collect()
}

/// Summary of a network without allocating real weights (all variables are zeros).
pub fn summarize(config: &ModelConfig, image_size: usize) -> Result<Summary> {
    let vb = VarBuilder::zeros(DType::F32, &candle_core::Device::Cpu);
    Network::new(config, vb)?.summary(image_size)
}
