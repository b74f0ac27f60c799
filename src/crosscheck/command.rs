//! `repro lockstep`: trains repro and the reference (PyTorch + timm, `tools/lockstep_timm.py`)
//! from the same weights on the same batches and prints the step-by-step comparison.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use super::compare::compare_dir;
use super::lockstep::{make_batches, train_repro, write_repro_side, LockstepData, LockstepRecipe};
use crate::models::Arch;

#[derive(Args, Debug, Clone)]
pub struct LockstepArgs {
    /// Networks to compare (timm has inception_v3, inception_v4, inception_resnet_v2).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "inception_v3,inception_v4,inception_resnet_v2"
    )]
    pub models: Vec<String>,
    /// Width multiplier (the reference builds timm's network at the same width).
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Input side in pixels (75, 107, ..., 299).
    #[arg(long, default_value_t = 107)]
    pub size: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Seed of repro's initial weights (and of the synthetic batches).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// BatchNorm momentum, PyTorch convention (the CIFAR-10 runs use 0.03).
    #[arg(long, default_value_t = 0.03)]
    pub bn_momentum: f64,
    /// Compute in f64 on both sides (rounding noise out of the way: differences left are
    /// differences of the maths).
    #[arg(long)]
    pub f64: bool,
    /// With f32: also train timm in f64, to show how far rounding alone moves its trajectory.
    #[arg(long)]
    pub yardstick: bool,
    /// Include Inception-v3's auxiliary head (timm's needs 299 px).
    #[arg(long)]
    pub aux: bool,
    /// An ImageFolder training set with 10 classes (e.g. CIFAR-10's train/) instead of the
    /// synthetic batches; images go through repro's training augmentation (crops of 25–100 %
    /// of the image, as the CIFAR-10 runs).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder (one subfolder per network).
    #[arg(long, default_value = "results/lockstep")]
    pub dir: PathBuf,
    /// The Python with torch and timm (default: $REPRO_PYTHON, else python3).
    #[arg(long)]
    pub python: Option<String>,
    /// Only write repro's side (recipe, batches, weights, trace); compare later with
    /// `--compare-only` after running the reference script yourself.
    #[arg(long, conflicts_with = "compare_only")]
    pub no_reference: bool,
    /// Compare what the folders already hold; train nothing.
    #[arg(long)]
    pub compare_only: bool,
    /// Every step up to this one appears in the table, and the pass/fail check covers them.
    #[arg(long, default_value_t = 20)]
    pub dense_steps: usize,
    /// Largest relative loss difference allowed over the dense steps.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
}

/// The networks of `--models`; an unknown name is an error naming the known ones.
pub fn models(args: &LockstepArgs) -> Result<Vec<Arch>, String> {
    args.models
        .iter()
        .map(|name| {
            Arch::from_name(name)
                .filter(|a| a.has_timm_weights())
                .ok_or_else(|| {
                    format!(
                        "`{name}` in --models: timm has inception_v3, inception_v4 and \
                         inception_resnet_v2"
                    )
                })
        })
        .collect()
}

/// Runs the check for every network; `Ok(false)` when a loss differs beyond the tolerance.
pub fn run(args: &LockstepArgs) -> Result<bool, String> {
    let mut all_within = true;
    let mut report = String::new();
    for arch in models(args)? {
        let dir = args.dir.join(arch.name());
        if !args.compare_only {
            prepare(args, arch, &dir)?;
            if args.no_reference {
                println!("{}: repro's side written to {}", arch, dir.display());
                continue;
            }
            run_reference(args, &dir)?;
        }
        let comparison = compare_dir(&dir).map_err(|e| e.to_string())?;
        let text = comparison.render(args.dense_steps);
        println!("{text}");
        std::fs::write(dir.join("lockstep.md"), &text)
            .map_err(|e| format!("{}: {e}", dir.join("lockstep.md").display()))?;
        report.push_str(&text);
        report.push('\n');
        let worst = comparison.max_loss_rel(args.dense_steps);
        if worst > args.tolerance {
            all_within = false;
            let first = comparison
                .steps
                .iter()
                .find(|r| r.loss_rel() > args.tolerance)
                .map_or(0, |r| r.step);
            println!(
                "{arch}: relative loss difference {worst:.1e} exceeds {:.0e} from step {first} on \
                 (step 1's gradients: median relative difference {:.1e}). A difference that \
                 starts at rounding level and grows by a steady factor per step is the training's \
                 sensitivity, not different maths: --yardstick shows timm's own f32 run leaving \
                 its f64 run the same way.",
                args.tolerance,
                comparison
                    .first_gradients
                    .get(comparison.first_gradients.len() / 2)
                    .map_or(f64::NAN, |d| d.rel)
            );
        }
    }
    if !args.no_reference {
        let path = args.dir.join("lockstep.md");
        std::fs::write(&path, report).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(all_within)
}

fn prepare(args: &LockstepArgs, arch: Arch, dir: &Path) -> Result<(), String> {
    let mut recipe = LockstepRecipe::new(arch, args.width, args.size, args.batch, args.steps);
    recipe.seed = args.seed;
    recipe.bn_momentum = args.bn_momentum;
    recipe.aux_head = args.aux && arch == Arch::InceptionV3;
    if args.f64 {
        recipe.dtype = "f64".into();
    }
    let data = match &args.data {
        Some(root) => {
            recipe.data = root.display().to_string();
            LockstepData::ImageFolder(root.clone())
        }
        None => LockstepData::Synthetic,
    };
    let batches = make_batches(&recipe, &data).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let run = train_repro(&recipe, &batches).map_err(|e| format!("{arch}: {e}"))?;
    let ops = if crate::models::fastops::enabled() {
        "fast CPU ops"
    } else {
        "stock candle ops"
    };
    println!(
        "{arch}: repro trained {} steps in {:.1} s ({ops})",
        run.loss.len(),
        started.elapsed().as_secs_f64()
    );
    write_repro_side(dir, &recipe, &batches, &run).map_err(|e| e.to_string())
}

fn run_reference(args: &LockstepArgs, dir: &Path) -> Result<(), String> {
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var("REPRO_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let relative = Path::new("tools/lockstep_timm.py");
    let script = if relative.exists() {
        relative.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
    };
    let mut command = Command::new(&python);
    command.arg(&script).arg(dir);
    if args.yardstick {
        command.arg("--yardstick");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run `{python}`: {e} (set --python or REPRO_PYTHON)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the reference trainer failed ({python} {} {}); it needs torch and timm",
            script.display(),
            dir.display()
        ))
    }
}
