//! Compares the two sides of a lockstep folder: per step (loss, gradient norm), the first
//! step's gradients per variable, and the final weights, running statistics and averages.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

use candle_core::{DType, Tensor};

use super::lockstep::{load, LockstepError, LockstepRecipe, StepTrace};

/// One step of both trainers (`step` counts from 1).
#[derive(Clone, Debug, PartialEq)]
pub struct StepRow {
    pub step: usize,
    pub repro_loss: f64,
    pub timm_loss: f64,
    pub repro_grad_norm: f64,
    pub timm_grad_norm: f64,
    /// timm's loss trained again in f64 (`--yardstick`), when the recipe is f32.
    pub timm_f64_loss: Option<f64>,
}

impl StepRow {
    /// How far f32 rounding alone moved timm's own loss (timm f32 against timm f64).
    pub fn rounding_rel(&self) -> Option<f64> {
        self.timm_f64_loss.map(|l| relative(self.timm_loss, l))
    }

    pub fn loss_rel(&self) -> f64 {
        relative(self.repro_loss, self.timm_loss)
    }
    pub fn grad_norm_rel(&self) -> f64 {
        relative(self.repro_grad_norm, self.timm_grad_norm)
    }
}

fn relative(ours: f64, reference: f64) -> f64 {
    (ours - reference).abs() / reference.abs().max(f64::MIN_POSITIVE)
}

/// How far one of repro's tensors is from timm's: `‖ours − timm‖ / ‖timm‖` and the largest
/// absolute difference. Tensors that are zero in exact arithmetic (e.g. the gradient of a
/// bias that a training-mode BatchNorm subtracts again) hold only rounding noise on both
/// sides; the denominator never drops below 1e-10 of the largest tensor norm of the set so
/// that noise does not read as a 100 % difference.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDiff {
    pub name: String,
    pub rel: f64,
    pub max_abs: f64,
}

/// Differences of every tensor present on both sides, worst first; names present on only
/// one side are an error (the two state dicts must describe the same network).
pub fn diff_tensors(
    ours: &HashMap<String, Tensor>,
    reference: &HashMap<String, Tensor>,
    what: &str,
) -> Result<Vec<TensorDiff>, LockstepError> {
    let skip = |n: &String| n.ends_with("num_batches_tracked");
    let mut missing: Vec<&String> = reference
        .keys()
        .filter(|n| !skip(n) && !ours.contains_key(*n))
        .chain(
            ours.keys()
                .filter(|n| !skip(n) && !reference.contains_key(*n)),
        )
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(LockstepError::Other(format!(
            "{what}: tensors on one side only: {}",
            missing
                .iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut pairs = Vec::new();
    for (name, r) in reference.iter().filter(|(n, _)| !skip(n)) {
        pairs.push((name, as_f64(&ours[name])?, as_f64(r)?));
    }
    let l2 = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let floor = 1e-10 * pairs.iter().map(|(_, _, b)| l2(b)).fold(0.0, f64::max);
    let mut out = Vec::new();
    for (name, a, b) in pairs {
        if a.len() != b.len() {
            return Err(LockstepError::Other(format!(
                "{what}: `{name}` has {} values in repro, {} in timm",
                a.len(),
                b.len()
            )));
        }
        let (mut diff2, mut ref2, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
        for (x, y) in a.iter().zip(&b) {
            diff2 += (x - y) * (x - y);
            ref2 += y * y;
            max_abs = max_abs.max((x - y).abs());
        }
        let rel = diff2.sqrt() / ref2.sqrt().max(floor).max(1e-300);
        out.push(TensorDiff {
            name: name.clone(),
            rel,
            max_abs,
        });
    }
    out.sort_by(|x, y| y.rel.total_cmp(&x.rel).then(x.name.cmp(&y.name)));
    Ok(out)
}

fn as_f64(t: &Tensor) -> Result<Vec<f64>, LockstepError> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| LockstepError::Other(e.to_string()))
}

/// Both sides of a lockstep folder, compared.
pub struct Comparison {
    pub recipe: LockstepRecipe,
    pub steps: Vec<StepRow>,
    pub first_gradients: Vec<TensorDiff>,
    /// Trainable weights at the end.
    pub weights: Vec<TensorDiff>,
    /// BatchNorm running means and variances at the end.
    pub running_stats: Vec<TensorDiff>,
    /// Moving averages at the end (weights and running statistics).
    pub ema: Vec<TensorDiff>,
}

/// Reads `repro_*` and `timm_*` of `dir` and compares them.
pub fn compare_dir(dir: &Path) -> Result<Comparison, LockstepError> {
    let recipe = LockstepRecipe::read(&dir.join("recipe.json"))?;
    let ours = StepTrace::read(&dir.join("repro_steps.json"))?;
    let theirs = StepTrace::read(&dir.join("timm_steps.json"))?;
    let yardstick_path = dir.join("timm_f64_steps.json");
    let yardstick = if recipe.dtype == "f32" && yardstick_path.exists() {
        Some(StepTrace::read(&yardstick_path)?)
    } else {
        None
    };
    let steps = ours
        .loss
        .iter()
        .zip(&theirs.loss)
        .zip(ours.grad_norm.iter().zip(&theirs.grad_norm))
        .enumerate()
        .map(|(i, ((rl, tl), (rg, tg)))| StepRow {
            step: i + 1,
            repro_loss: *rl,
            timm_loss: *tl,
            repro_grad_norm: *rg,
            timm_grad_norm: *tg,
            timm_f64_loss: yardstick.as_ref().and_then(|y| y.loss.get(i).copied()),
        })
        .collect();
    let pair = |name: &str| -> Result<Vec<TensorDiff>, LockstepError> {
        let ours = load(&dir.join(format!("repro_{name}.safetensors")))?;
        let theirs = load(&dir.join(format!("timm_{name}.safetensors")))?;
        diff_tensors(&ours, &theirs, name)
    };
    let is_stat =
        |d: &TensorDiff| d.name.ends_with("running_mean") || d.name.ends_with("running_var");
    let (running_stats, weights): (Vec<_>, Vec<_>) = pair("final")?.into_iter().partition(is_stat);
    Ok(Comparison {
        recipe,
        steps,
        first_gradients: pair("grads_step1")?,
        weights,
        running_stats,
        ema: pair("ema")?,
    })
}

impl Comparison {
    /// The largest relative loss difference over the first `n` steps.
    pub fn max_loss_rel(&self, n: usize) -> f64 {
        self.steps
            .iter()
            .take(n)
            .map(StepRow::loss_rel)
            .fold(0.0, f64::max)
    }

    /// A Markdown report: the settings, the per-step table (every step up to `dense`, then
    /// every tenth) and the worst tensors of each comparison.
    pub fn render(&self, dense: usize) -> String {
        let r = &self.recipe;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### {} ({}, width {}, {} px, batch {}, {} steps, {} data, seed {})\n",
            r.arch, r.dtype, r.width, r.image_size, r.batch_size, r.steps, r.data, r.seed
        );
        let yardstick = self.steps.iter().any(|r| r.timm_f64_loss.is_some());
        s.push_str(
            "| step | repro loss | timm loss | rel. diff | repro ‖g‖ | timm ‖g‖ | rel. diff |",
        );
        s.push_str(if yardstick {
            " timm f64 loss | timm f32 vs f64 |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        } else {
            "\n|---:|---:|---:|---:|---:|---:|---:|\n"
        });
        for row in &self.steps {
            if row.step <= dense || row.step % 10 == 0 || row.step == self.steps.len() {
                let _ = write!(
                    s,
                    "| {} | {:.6} | {:.6} | {:.1e} | {:.5} | {:.5} | {:.1e} |",
                    row.step,
                    row.repro_loss,
                    row.timm_loss,
                    row.loss_rel(),
                    row.repro_grad_norm,
                    row.timm_grad_norm,
                    row.grad_norm_rel()
                );
                match (row.timm_f64_loss, row.rounding_rel()) {
                    (Some(l), Some(d)) => {
                        let _ = writeln!(s, " {l:.6} | {d:.1e} |");
                    }
                    _ => s.push('\n'),
                }
            }
        }
        let _ = writeln!(
            s,
            "\nLargest relative loss difference: {:.1e} over the first {} steps, {:.1e} over all {}.",
            self.max_loss_rel(dense),
            dense.min(self.steps.len()),
            self.max_loss_rel(usize::MAX),
            self.steps.len()
        );
        for (title, diffs) in [
            ("gradients at step 1", &self.first_gradients),
            ("final weights", &self.weights),
            ("final BatchNorm running statistics", &self.running_stats),
            ("final moving averages", &self.ema),
        ] {
            let worst: Vec<String> = diffs
                .iter()
                .take(3)
                .map(|d| format!("`{}` {:.1e}", d.name, d.rel))
                .collect();
            let median = diffs.get(diffs.len() / 2).map_or(f64::NAN, |d| d.rel);
            let _ = writeln!(
                s,
                "- {title} ({} tensors): relative L2 difference median {:.1e}, worst {}",
                diffs.len(),
                median,
                worst.join(", ")
            );
        }
        s
    }
}
