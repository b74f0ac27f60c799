//! `repro plan`: each run an experiment needs, its folder, how it stands, and the work it takes.

use std::path::Path;

use crate::experiment::Experiment;
use crate::runner::{plan, training_macs};

/// The plan of `experiment` as a table, one line per run under the experiment's heading.
pub fn plan_text(experiment: &Experiment, results: &Path) -> String {
    let mut out = format!("{}\n", experiment.heading());
    let planned = plan(experiment, results);
    let states: Vec<String> = planned.iter().map(|p| p.progress.to_string()).collect();
    let name_width = planned
        .iter()
        .map(|p| p.run.name.len())
        .max()
        .unwrap_or(0)
        .max(3);
    let folder_width = name_width + 9; // `<name>-<hash8>`
    let state_width = states.iter().map(String::len).max().unwrap_or(0).max(5);
    out.push_str(&format!(
        "  {:<name_width$} {:<folder_width$} {:<state_width$} {:>7} {:>12}  used by\n",
        "run", "folder", "state", "epochs", "train MACs"
    ));
    for (p, state) in planned.iter().zip(&states) {
        let c = &p.run.config;
        let work = training_macs(c)
            .map(engineering)
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "  {:<name_width$} {:<folder_width$} {:<state_width$} {:>7} {:>12}  {}\n",
            p.run.name,
            p.dir.file_name().unwrap_or_default().to_string_lossy(),
            state,
            c.train.epochs,
            work,
            p.used_by.join(", ")
        ));
    }
    out
}

/// 8.1e18 → "8.1 E".
fn engineering(x: f64) -> String {
    let units = [
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
    ];
    units
        .iter()
        .find(|(scale, _)| x >= *scale)
        .map(|(scale, u)| format!("{:.1} {u}", x / scale))
        .unwrap_or_else(|| format!("{x:.0}"))
}
