//! One model or an ensemble of checkpoints over a data set under one crop protocol.
//!
//! The samples are processed in chunks of about one forward batch of crops (at least one
//! image): a producer thread decodes each image of a chunk once and renders all its
//! crops on a rayon pool while the previous chunk is scored, so at most two chunks of
//! crops are in memory. Each model scores the crops of a chunk in forward batches of at
//! most `batch_size` crops; softmax probabilities are averaged over the crops of each
//! image, then over the models, and only the top-k hits and the top-5 of each image are
//! kept.

use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use super::probabilities::StoredProbabilities;
use super::progress::EvalProgress;
use super::protocol::check_protocol;
use super::record::EvalRecord;
use super::render::render_chunk;
use super::report::{EvalReport, Prediction, SkippedSample};
use super::scores::{average_over_crops, average_over_models, top_k};
use super::EvalError;
use crate::data::{CropProtocol, Dataset, ImageSet, Sample};
use crate::interrupt::StopSignal;
use crate::models::import::load_timm_weights;
use crate::models::init::zeroed_var_builder;
use crate::models::{ModelConfig, Network, MIN_IMAGE_SIZE};
use crate::train::top_k_hits;

/// Classes listed per image in the predictions, and the k of the top-5 error.
const TOP: usize = 5;

/// One member of an evaluated ensemble: a network and its timm-format weights (our
/// `final.safetensors` or imported timm weights).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelWeights {
    /// The network's structure; must match the checkpoint.
    pub config: ModelConfig,
    /// The safetensors checkpoint.
    pub weights: PathBuf,
}

impl ModelWeights {
    /// `arch:weights`, as results name the model.
    pub fn name(&self) -> String {
        format!("{}:{}", self.config.arch, self.weights.display())
    }
}

/// Everything an evaluation needs.
#[derive(Clone, Debug)]
pub struct EvalRequest<'a> {
    /// The ensemble (one entry for a single model); all must have the same classes.
    pub models: Vec<ModelWeights>,
    /// The images and labels; `dataset.set` says which evaluation set they are.
    pub dataset: &'a Dataset,
    /// Which crops of each image are scored (see [`super::protocol_for`]).
    pub protocol: CropProtocol,
    /// Side of the rendered crops in pixels (299 for the paper's networks); must equal
    /// every model's `image_size`.
    pub input_size: u32,
    /// Crops per forward pass.
    pub batch_size: usize,
    /// Threads that decode and render images; 0 uses every core (as the data loader does).
    pub threads: usize,
    /// Where the networks run.
    pub device: Device,
    /// Leave out images that cannot be read or decoded (counted and listed in the report)
    /// instead of failing on the first.
    pub skip_bad_images: bool,
    /// A progress bar on a terminal, log lines otherwise.
    pub show_progress: bool,
    /// Keep each image's class probabilities in the report (`EvalReport::probabilities`), for
    /// storing a single model's so that ensembles can reuse them; otherwise left empty.
    pub keep_probabilities: bool,
    /// Checked between chunks: when set, the evaluation ends with [`EvalError::Interrupted`].
    pub stop: StopSignal,
}

/// Evaluates the ensemble of `req.models` on `req.dataset` under `req.protocol`.
pub fn evaluate(req: &EvalRequest) -> Result<EvalReport, EvalError> {
    check_request(req)?;
    let nets = req
        .models
        .iter()
        .map(|spec| load_network(spec, &req.device))
        .collect::<Result<Vec<_>, _>>()?;
    let crops = req.protocol.num_crops();
    let chunk_images = req.batch_size.div_ceil(crops).max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(req.threads)
        .build()
        .map_err(|e| EvalError::Config(format!("cannot start {} threads: {e}", req.threads)))?;
    let (samples, pool) = (&req.dataset.samples, &pool);
    let mut tally = Tally {
        keep_probabilities: req.keep_probabilities,
        ..Tally::default()
    };
    let mut progress = EvalProgress::new(
        progress_label(req),
        samples.len() as u64,
        crops as u64,
        req.show_progress,
    );
    let skip = req.skip_bad_images;
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel(1);
        scope.spawn(move || {
            for chunk in samples.chunks(chunk_images) {
                let rendered =
                    pool.install(|| render_chunk(chunk, &req.protocol, req.input_size, skip));
                if tx.send(rendered).is_err() {
                    break;
                }
            }
        });
        let mut done = 0u64;
        for (chunk, rendered) in samples.chunks(chunk_images).zip(rx) {
            if req.stop.requested() {
                return Err(EvalError::Interrupted {
                    images: done,
                    total: samples.len() as u64,
                });
            }
            let rendered = rendered?;
            let kept: Vec<Sample> = rendered.kept.iter().map(|&i| chunk[i].clone()).collect();
            if !kept.is_empty() {
                let probs = score_chunk(req, &nets, rendered.pixels, kept.len())?;
                tally.add(&kept, &probs, &req.device)?;
            }
            tally.skipped.extend(
                rendered
                    .skipped
                    .into_iter()
                    .map(|(i, reason)| SkippedSample {
                        path: chunk[i].path.clone(),
                        label: chunk[i].label,
                        reason,
                    }),
            );
            done += chunk.len() as u64;
            progress.update(done, tally.skipped.len() as u64);
        }
        Ok::<(), EvalError>(())
    })?;
    drop(progress);
    if tally.images == 0 {
        return Err(EvalError::Config(format!(
            "none of the {} images of {} could be read or decoded",
            samples.len(),
            req.dataset.describe()
        )));
    }
    Ok(tally.report(
        crops,
        req.protocol.describe(req.input_size),
        req.dataset.set,
        req.models.iter().map(ModelWeights::name).collect(),
    ))
}

/// The evaluation of the ensemble of `members`, each a stored single-model evaluation of
/// `dataset` under the same crops, without running a network: their probabilities are
/// averaged as [`evaluate`] averages its models'. `Ok(None)` when the members do not cover
/// exactly the images of `dataset` with the same crops (the caller evaluates instead).
pub fn ensemble_of_stored(
    members: &[StoredProbabilities],
    dataset: &Dataset,
    crops: usize,
) -> Result<Option<EvalReport>, EvalError> {
    let Some(first) = members.first() else {
        return Err(EvalError::Config(
            "an ensemble needs at least one model".into(),
        ));
    };
    let same = |m: &StoredProbabilities| {
        m.images == first.images
            && m.crop_definition == first.crop_definition
            && m.eval_set == dataset.set.as_str()
            && m.probabilities.dims() == first.probabilities.dims()
            && m.skipped
                .iter()
                .map(|s| &s.path)
                .eq(first.skipped.iter().map(|s| &s.path))
    };
    let mut covered: Vec<(&std::path::Path, u32)> = first
        .images
        .iter()
        .map(|(p, l)| (p.as_path(), *l))
        .chain(first.skipped.iter().map(|s| (s.path.as_path(), s.label)))
        .collect();
    covered.sort();
    let mut wanted: Vec<(&std::path::Path, u32)> = dataset
        .samples
        .iter()
        .map(|s| (s.path.as_path(), s.label))
        .collect();
    wanted.sort();
    if !members.iter().all(same) || covered != wanted || first.images.is_empty() {
        return Ok(None);
    }
    let fail = |e: candle_core::Error| EvalError::Scores(e.to_string());
    let per_model: Vec<Tensor> = members.iter().map(|m| m.probabilities.clone()).collect();
    let probs = average_over_models(&per_model).map_err(fail)?;
    let samples: Vec<Sample> = first
        .images
        .iter()
        .map(|(path, label)| Sample {
            path: path.clone(),
            label: *label,
        })
        .collect();
    let mut tally = Tally {
        skipped: first.skipped.clone(),
        keep_probabilities: true,
        ..Tally::default()
    };
    tally.add(&samples, &probs, &Device::Cpu)?;
    Ok(Some(tally.report(
        crops,
        first.crop_definition.clone(),
        dataset.set,
        members.iter().map(|m| m.model.clone()).collect(),
    )))
}

/// `inception_v4 (144 crops)`, `ensemble of 4 (12 crops)`.
fn progress_label(req: &EvalRequest) -> String {
    let models = match req.models.as_slice() {
        [one] => one.config.arch.to_string(),
        many => format!("ensemble of {}", many.len()),
    };
    let crops = req.protocol.num_crops();
    format!(
        "{models} ({crops} crop{})",
        if crops == 1 { "" } else { "s" }
    )
}

/// Rejects requests that cannot be evaluated, with a message saying why.
fn check_request(req: &EvalRequest) -> Result<(), EvalError> {
    let bad = |what: String| Err(EvalError::Config(what));
    let Some(first) = req.models.first() else {
        return bad("no model to evaluate".into());
    };
    if req.dataset.is_empty() {
        return bad(format!("no images in {}", req.dataset.describe()));
    }
    if req.batch_size == 0 {
        return bad("batch size must be at least 1".into());
    }
    if (req.input_size as usize) < MIN_IMAGE_SIZE {
        return bad(format!(
            "input size {} is below the networks' minimum of {MIN_IMAGE_SIZE}",
            req.input_size
        ));
    }
    check_protocol(&req.protocol, req.input_size)?;
    if let Some(m) = req
        .models
        .iter()
        .find(|m| m.config.image_size != req.input_size as usize)
    {
        return bad(format!(
            "{} is configured for {} px but the crops are {} px",
            m.name(),
            m.config.image_size,
            req.input_size
        ));
    }
    let classes = first.config.num_classes;
    if let Some(other) = req.models.iter().find(|m| m.config.num_classes != classes) {
        return bad(format!(
            "ensemble members disagree on the number of classes: {} has {classes}, {} has {}",
            first.name(),
            other.name(),
            other.config.num_classes
        ));
    }
    if let Some(s) = req
        .dataset
        .samples
        .iter()
        .find(|s| s.label as usize >= classes)
    {
        return bad(format!(
            "{} has label {} but the networks have {classes} classes",
            s.path.display(),
            s.label
        ));
    }
    Ok(())
}

/// Builds the network of `spec` on `device` and loads its checkpoint.
fn load_network(spec: &ModelWeights, device: &Device) -> Result<Network, EvalError> {
    let varmap = VarMap::new();
    let vb = zeroed_var_builder(&varmap, DType::F32, device);
    let net = Network::new(&spec.config, vb).map_err(|source| EvalError::Build {
        weights: spec.weights.clone(),
        source,
    })?;
    load_timm_weights(&varmap, &spec.weights)?;
    Ok(net)
}

/// The ensemble's averaged probabilities `(images, classes)` for the rendered crops of
/// one chunk of `images` images.
fn score_chunk(
    req: &EvalRequest,
    nets: &[Network],
    pixels: Vec<f32>,
    images: usize,
) -> Result<Tensor, EvalError> {
    let crops = req.protocol.num_crops();
    let size = req.input_size as usize;
    let x = Tensor::from_vec(pixels, (images * crops, 3, size, size), &req.device)
        .map_err(|e| EvalError::Scores(format!("moving crops to the device: {e}")))?;
    let per_model = nets
        .iter()
        .zip(&req.models)
        .map(|(net, spec)| {
            let failed = |source| EvalError::Forward {
                weights: spec.weights.clone(),
                source,
            };
            let logits = (0..images * crops)
                .step_by(req.batch_size)
                .map(|start| {
                    let len = req.batch_size.min(images * crops - start);
                    net.infer(&x.narrow(0, start, len)?).map(|out| out.logits)
                })
                .collect::<candle_core::Result<Vec<_>>>()
                .map_err(failed)?;
            Tensor::cat(&logits, 0)
                .and_then(|l| average_over_crops(&l, crops))
                .map_err(failed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    average_over_models(&per_model).map_err(|e| EvalError::Scores(e.to_string()))
}

/// Running totals of an evaluation.
#[derive(Default)]
struct Tally {
    images: u64,
    hits1: f64,
    hits5: f64,
    predictions: Vec<Prediction>,
    /// Each image's class probabilities, in prediction order (when `keep_probabilities`).
    probabilities: Vec<f32>,
    keep_probabilities: bool,
    skipped: Vec<SkippedSample>,
}

impl Tally {
    /// The report of the images tallied.
    fn report(
        self,
        crops: usize,
        crop_definition: String,
        eval_set: ImageSet,
        models: Vec<String>,
    ) -> EvalReport {
        let images = self.images as f64;
        EvalReport {
            record: EvalRecord {
                crops: crops as u64,
                crop_definition,
                eval_set: eval_set.as_str().to_string(),
                models,
                images: self.images,
                top1_err: 1.0 - self.hits1 / images,
                top5_err: 1.0 - self.hits5 / images,
                skipped: self
                    .skipped
                    .iter()
                    .map(|b| b.path.display().to_string())
                    .collect(),
            },
            predictions: self.predictions,
            probabilities: self.probabilities,
            skipped: self.skipped,
        }
    }

    /// Counts the top-1 and top-5 hits of one chunk's averaged probabilities and keeps
    /// each image's top 5.
    fn add(&mut self, chunk: &[Sample], probs: &Tensor, device: &Device) -> Result<(), EvalError> {
        let fail = |e: &dyn fmt::Display| EvalError::Scores(e.to_string());
        let labels: Vec<u32> = chunk.iter().map(|s| s.label).collect();
        let labels = Tensor::new(labels.as_slice(), device).map_err(|e| fail(&e))?;
        let hits = |k: usize| -> Result<f64, EvalError> {
            let hits = top_k_hits(probs, &labels, k).map_err(|e| fail(&e))?;
            let sum = hits.sum_all().and_then(|t| t.to_scalar::<f32>());
            Ok(sum.map_err(|e| fail(&e))? as f64)
        };
        self.hits1 += hits(1)?;
        self.hits5 += hits(TOP)?;
        let rows = probs.to_vec2::<f32>().map_err(|e| fail(&e))?;
        for (sample, row) in chunk.iter().zip(rows) {
            self.predictions.push(Prediction {
                path: sample.path.clone(),
                label: sample.label,
                top5: top_k(&row, TOP),
            });
            if self.keep_probabilities {
                self.probabilities.extend_from_slice(&row);
            }
        }
        self.images += chunk.len() as u64;
        Ok(())
    }
}
