//! Checks made before anything trains or evaluates, so that bad input fails at once with
//! exit status 2 instead of after hours of work: data folders, blacklists, weight files.

use std::path::Path;

use super::plan::{plan, RunProgress};
use candle_core::Device;

use crate::device::check_precision;
use crate::experiment::{EvalSet, Experiment};

/// Checks, before anything trains, that every run that needs training has its data, and
/// that released weights and their validation images exist.
pub fn preflight(
    e: &Experiment,
    results: &Path,
    force: bool,
    device: &Device,
) -> Result<(), String> {
    for ((t, r), released) in &e.released {
        let row = format!(
            "{}: table `{}` row `{}`",
            e.path.display(),
            e.tables[*t].id,
            e.tables[*t].rows[*r].label
        );
        if let Some(w) = released.weights.iter().find(|w| !w.is_file()) {
            return Err(format!("{row}: released weights `{}` do not exist (tools/export_timm_weights.py writes them)", w.display()));
        }
        let val = released.config.data.val.as_deref().unwrap_or_default();
        if released.config.data.synthetic.is_none() && !std::path::Path::new(val).is_dir() {
            return Err(format!("{row}: data.val: folder `{val}` does not exist"));
        }
    }
    for p in plan(e, results) {
        let needs_training = force
            || matches!(
                p.progress,
                RunProgress::Missing | RunProgress::Partial { .. }
            );
        let data = &p.run.config.data;
        if needs_training {
            if let Err(why) = check_precision(p.run.config.train.precision, device) {
                return Err(format!(
                    "{}: run `{}`: train.precision: {why}",
                    e.path.display(),
                    p.run.name,
                ));
            }
        }
        if !needs_training || data.synthetic.is_some() {
            continue;
        }
        for (field, path) in [("data.train", &data.train), ("data.val", &data.val)] {
            let path = path.as_deref().unwrap_or_default();
            if !std::path::Path::new(path).is_dir() {
                let variables = match e.env_vars.as_slice() {
                    [] => String::new(),
                    vars => format!(", or through {}", vars.join(" / ")),
                };
                return Err(format!(
                    "{}: run `{}`: {field}: folder `{path}` does not exist (set it in the file, with --set {field}=DIR{variables})",
                    e.path.display(),
                    p.run.name
                ));
            }
        }
        if data.eval_set == EvalSet::Nonblacklisted {
            let path = data.blacklist.as_deref().unwrap_or_default();
            if !std::path::Path::new(path).is_file() {
                return Err(format!(
                    "{}: run `{}`: data.blacklist: file `{path}` does not exist (data.eval_set is nonblacklisted: the devkit's ILSVRC2012_validation_blacklist.txt is needed)",
                    e.path.display(),
                    p.run.name
                ));
            }
        }
    }
    Ok(())
}
