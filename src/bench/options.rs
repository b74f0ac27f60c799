//! What every measurement is told: networks, sizes, device, steps; and what they share to
//! set themselves up.

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::device::{apply_precision, parse_device, Precision, PrecisionScope};
use crate::models::{Arch, ModelConfig};

#[derive(Args, Debug, Clone)]
pub struct BenchOptions {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, tf32 (CUDA only) or bf16 (convolutions in bf16, the rest f32).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Comma-separated networks (default: all four).
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    #[arg(long, default_value_t = 299)]
    pub size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed steps (train, eval); ignored by parity.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Training steps after the timed ones whose phases are timed (each phase waits for the
    /// device, so they are not part of the images/s).
    #[arg(long, default_value_t = 2)]
    pub phase_steps: usize,
    /// Train: over the phase steps, also the time of each kind of the CPU's fast ops
    /// (convolution forward and gradients, BatchNorm+ReLU, pooling, residual sums) and of the
    /// rest of the forward and backward passes (candle's own ops, autograd), printed as a table
    /// on stderr and in the summary line.
    #[arg(long)]
    pub profile: bool,
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Default for BenchOptions {
    /// The command line's defaults: CPU, f32, all four networks, 299 px, batch 32.
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            precision: "f32".into(),
            models: None,
            size: 299,
            batch: 32,
            steps: 10,
            warmup: 2,
            phase_steps: 2,
            profile: false,
            width: 1.0,
            classes: 1000,
            seed: 0,
        }
    }
}

pub(crate) fn archs(o: &BenchOptions) -> Result<Vec<Arch>, String> {
    match &o.models {
        None => Ok(Arch::ALL.to_vec()),
        Some(names) => names
            .iter()
            .map(|n| Arch::from_name(n).ok_or_else(|| format!("--models: unknown network `{n}`")))
            .collect(),
    }
}

pub(crate) fn model_config(arch: Arch, o: &BenchOptions) -> ModelConfig {
    let mut m = ModelConfig::new(arch);
    m.image_size = o.size;
    m.width = o.width;
    m.num_classes = o.classes;
    m
}

/// The device and precision of a benchmark; the precision holds while the scope lives.
pub(crate) fn setup(
    o: &BenchOptions,
) -> Result<(candle_core::Device, String, Precision, PrecisionScope), String> {
    let (device, name) = parse_device(&o.device)?;
    let precision = Precision::parse(&o.precision)?;
    let scope = apply_precision(precision, &device).map_err(|e| format!("--precision: {e}"))?;
    Ok((device, name, precision, scope))
}

pub(crate) fn err(context: &'static str) -> impl Fn(candle_core::Error) -> String {
    move |e| format!("{context}: {e}")
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// What is timed: a training step, or a forward pass in inference mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A whole training step: forward, backward, clipping, RMSProp, moving average.
    #[default]
    Train,
    /// A forward pass in inference mode (running BatchNorm statistics; PyTorch under
    /// `torch.inference_mode()`).
    Eval,
}

impl Mode {
    /// How the GFLOP per image are counted, for the header and the table.
    pub(crate) fn flop_count(self) -> &'static str {
        match self {
            Mode::Train => {
                "training FLOPs per image = 3 × 2 × the forward multiply-adds of repro's network \
                 (forward, input gradient, weight gradient)"
            }
            Mode::Eval => {
                "evaluation FLOPs per crop = 2 × the forward multiply-adds of repro's network"
            }
        }
    }

    /// What a rate counts.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Mode::Train => "images/s",
            Mode::Eval => "crops/s",
        }
    }

    /// FLOPs per image as a multiple of the forward multiply-adds.
    pub(crate) fn flop_per_mac(self) -> f64 {
        match self {
            Mode::Train => 6.0,
            Mode::Eval => 2.0,
        }
    }
}

#[cfg(test)]
pub(crate) fn tiny(models: &str) -> BenchOptions {
    BenchOptions {
        device: "cpu".into(),
        precision: "f32".into(),
        models: Some(vec![models.into()]),
        size: 75,
        batch: 2,
        steps: 1,
        warmup: 1,
        phase_steps: 1,
        profile: false,
        width: 0.125,
        classes: 10,
        seed: 0,
    }
}
