//! `repro eval`: one model or an ensemble of weight files (ours or timm's) evaluated with 1, 10,
//! 12 or 144 crops on a folder of validation images.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::outcome::CommandError;
use crate::eval::{
    evaluate, protocol_for, write_predictions, EvalError, EvalReport, EvalRequest, ModelWeights,
};
use crate::interrupt::StopSignal;
use crate::models::{Arch, AvgPoolPadding, ModelConfig};

#[derive(Args)]
pub struct EvalArgs {
    /// inception_v3, inception_v4, inception_resnet_v1 or inception_resnet_v2.
    #[arg(long)]
    pub model: String,
    /// Weight files (safetensors with timm's names: a run's final.safetensors or a timm state
    /// dict). Several make an ensemble: probabilities are averaged over crops, then models.
    #[arg(long = "weights", required = true)]
    pub weights: Vec<PathBuf>,
    /// Validation images: `<class>/<image>` folders, or the flat ILSVRC-2012 folder with --val-labels.
    #[arg(long)]
    pub data: PathBuf,
    /// The devkit's ILSVRC2012_validation_ground_truth.txt, for the flat layout.
    #[arg(long)]
    pub val_labels: Option<PathBuf>,
    /// 1, 10, 12 or 144.
    #[arg(long, default_value_t = 1)]
    pub crops: u32,
    /// Central crop fraction of each side (default: the model's, 0.875 or 0.8975 for IR-v2).
    #[arg(long)]
    pub crop_pct: Option<f64>,
    #[arg(long, value_enum, default_value_t = EvalSetArg::All)]
    pub eval_set: EvalSetArg,
    /// The devkit's blacklist, for --eval-set nonblacklisted.
    #[arg(long)]
    pub blacklist: Option<PathBuf>,
    /// Write one row per image (path, label, top-5 classes and probabilities) to this Parquet file.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Input size in pixels.
    #[arg(long, default_value_t = 299)]
    pub size: usize,
    /// Width multiplier the weights were trained with.
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Classes of the classifier (default: read from the weights).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Blocks per stage the weights were trained with (default: the paper's), e.g. 1,1,1.
    #[arg(long, value_delimiter = ',')]
    pub blocks: Option<Vec<usize>>,
    /// Average-pool padding: exclude (TF, default) or include (to match timm's inception_v3 exactly).
    #[arg(long, value_enum, default_value_t = PadArg::Exclude)]
    pub avg_pool_padding: PadArg,
    /// Crops per forward pass.
    #[arg(long, default_value_t = 144)]
    pub batch: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 (the reference), tf32 (CUDA) or bf16: convolutions with bf16 operands and f32 sums
    /// (CUDA, and CPUs with AVX512-BF16), about 1.5x the crops/s of f32 on such a CPU.
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Decoding threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Leave out images that cannot be read or decoded instead of stopping at the first:
    /// they are counted, listed in the output and in --predictions, and not scored.
    #[arg(long)]
    pub skip_bad_images: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EvalSetArg {
    All,
    Nonblacklisted,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PadArg {
    Exclude,
    Include,
}

/// What an evaluation found, and where its predictions were written.
pub struct EvalOutcome {
    pub report: EvalReport,
    pub predictions: Option<PathBuf>,
}

/// Evaluates the weight files of `args` (one model, or an ensemble) and writes the
/// predictions file it asks for.
pub fn evaluate_weights(args: &EvalArgs, stop: StopSignal) -> Result<EvalOutcome, CommandError> {
    let arch = Arch::from_name(&args.model)
        .ok_or_else(|| CommandError::bad_input(format!("unknown model `{}`", args.model)))?;
    for w in &args.weights {
        if !w.is_file() {
            return Err(CommandError::bad_input(format!(
                "--weights: {} does not exist",
                w.display()
            )));
        }
    }
    let classes = match args.classes {
        Some(n) => n,
        None => crate::models::import::classifier_outputs(&args.weights[0], arch)
            .map_err(CommandError::bad_input)?,
    };
    let mut config = ModelConfig::new(arch);
    config.num_classes = classes;
    config.width = args.width;
    config.image_size = args.size;
    config.blocks = match args.blocks.as_deref() {
        None => None,
        Some(&[a, b, c]) => Some([a, b, c]),
        Some(_) => {
            return Err(CommandError::bad_input(
                "--blocks takes three numbers, e.g. 1,1,1",
            ))
        }
    };
    config.avg_pool_padding = Some(match args.avg_pool_padding {
        PadArg::Exclude => AvgPoolPadding::Exclude,
        PadArg::Include => AvgPoolPadding::Include,
    });
    let labels = args
        .val_labels
        .clone()
        .map(crate::data::ValLabels::GroundTruth);
    let nonblacklisted = matches!(args.eval_set, EvalSetArg::Nonblacklisted);
    let dataset = crate::runner::eval_dataset(
        &args.data,
        nonblacklisted,
        args.blacklist.as_deref(),
        labels,
    )
    .map_err(CommandError::bad_input)?;
    let crop_pct = args.crop_pct.unwrap_or(arch.eval_defaults().1);
    let protocol =
        protocol_for(args.crops, crop_pct, args.size as u32).map_err(CommandError::bad_input)?;
    let (device, _) = crate::device::parse_device(&args.device).map_err(CommandError::bad_input)?;
    let precision =
        crate::device::Precision::parse(&args.precision).map_err(CommandError::bad_input)?;
    let _precision = crate::device::apply_precision(precision, &device)
        .map_err(|e| CommandError::bad_input(format!("--precision: {e}")))?;
    let request = EvalRequest {
        models: args
            .weights
            .iter()
            .map(|w| ModelWeights {
                config: config.clone(),
                weights: w.clone(),
            })
            .collect(),
        dataset: &dataset,
        protocol,
        input_size: args.size as u32,
        batch_size: args.batch,
        threads: args.threads,
        device,
        skip_bad_images: args.skip_bad_images,
        show_progress: true,
        keep_probabilities: false,
        stop,
    };
    let report = evaluate(&request).map_err(|e| match e {
        EvalError::Image(e) => CommandError::bad_input(format!(
            "{e}\n(--skip-bad-images leaves unreadable images out and lists them)"
        )),
        e @ EvalError::Interrupted { .. } => CommandError::interrupted(e),
        e if e.is_bad_input() => CommandError::bad_input(e),
        e => CommandError::failed(e),
    })?;
    if let Some(path) = &args.predictions {
        write_predictions(path, &report).map_err(CommandError::failed)?;
    }
    Ok(EvalOutcome {
        report,
        predictions: args.predictions.clone(),
    })
}
