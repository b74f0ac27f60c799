//! What an experiment needs: the training runs its figures, tables and claims name, where
//! each lives in the results folder, and how far each has got.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::experiment::{Experiment, ResolvedRun, RunConfig};
use crate::models::{group_digits, summarize};
use crate::store::provenance::{Provenance, RunStatus};
use crate::store::RunDir;

/// How far a run has got.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunProgress {
    /// Finished: reused as it is.
    Done,
    /// Finished by diverging at `step`: reused as it is (the figure shows it dying).
    Diverged { step: u64 },
    /// Interrupted: resumes from the checkpoint at `step`.
    Partial { step: u64 },
    /// Never started.
    Missing,
}

impl std::fmt::Display for RunProgress {
    /// The words every command and the report use for a run's state: `done`, `diverged at
    /// step 12`, `interrupted at step 1,200` (it resumes from its checkpoint), `not started`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunProgress::Done => f.write_str("done"),
            RunProgress::Diverged { step } => write!(f, "diverged at step {}", group_digits(*step)),
            RunProgress::Partial { step } => {
                write!(f, "interrupted at step {}", group_digits(*step))
            }
            RunProgress::Missing => f.write_str("not started"),
        }
    }
}

/// One training run of the plan.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    pub run: ResolvedRun,
    pub dir: PathBuf,
    pub progress: RunProgress,
    /// The figures, tables and claims that use it.
    pub used_by: Vec<String>,
}

/// `results/runs/<name>-<hash>`.
pub fn run_dir(results: &Path, run: &ResolvedRun) -> PathBuf {
    let own = results.join("runs").join(run.folder_name());
    if own.exists() {
        return own;
    }
    same_run_elsewhere(results, run).unwrap_or(own)
}

/// A folder of another name holding this very run (same configuration): a run two sweeps or
/// two experiment files share trains once.
fn same_run_elsewhere(results: &Path, run: &ResolvedRun) -> Option<PathBuf> {
    let suffix = format!("-{}", &run.hash[..8]);
    let config = serde_yaml::to_string(&run.config).ok()?;
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(results.join("runs"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
        })
        .collect();
    candidates.sort();
    candidates.into_iter().find(|dir| {
        std::fs::read_to_string(RunDir::new(dir).config_yaml()).is_ok_and(|text| text == config)
    })
}

/// The runs the experiment uses, in name order, with their state on disk.
pub fn plan(experiment: &Experiment, results: &Path) -> Vec<PlannedRun> {
    let mut used: Vec<(String, String)> = Vec::new();
    for f in &experiment.figures {
        used.extend(f.runs.iter().map(|r| (r.clone(), f.id.clone())));
    }
    for t in &experiment.tables {
        for row in &t.rows {
            used.extend(row.runs.iter().map(|r| (r.clone(), t.id.clone())));
        }
    }
    for (i, c) in experiment.claims.iter().enumerate() {
        used.extend(
            c.check
                .runs()
                .into_iter()
                .map(|r| (r.clone(), format!("claim {}", i + 1))),
        );
    }
    let names: BTreeSet<&String> = used.iter().map(|(r, _)| r).collect();
    // Runs of the same configuration under two names share the first one's folder.
    let mut folders: std::collections::HashMap<String, PathBuf> = Default::default();
    names
        .into_iter()
        .map(|name| {
            let run = experiment.runs[name].clone();
            let dir = folders
                .entry(run.hash.clone())
                .or_insert_with(|| run_dir(results, &run))
                .clone();
            let mut used_by: Vec<String> = used
                .iter()
                .filter(|(r, _)| r == name)
                .map(|(_, by)| by.clone())
                .collect();
            used_by.dedup();
            PlannedRun {
                progress: progress_of(&dir),
                run,
                dir,
                used_by,
            }
        })
        .collect()
}

/// Reads the state of a run folder without locking it.
pub fn progress_of(dir: &Path) -> RunProgress {
    let run_dir = RunDir::new(dir);
    if run_dir.is_done() {
        return match Provenance::read(&run_dir.provenance_json()).map(|p| p.status) {
            Ok(RunStatus::Diverged { step }) => RunProgress::Diverged { step },
            _ => RunProgress::Done,
        };
    }
    match run_dir.checkpoint_store().newest_state() {
        Some(state) => RunProgress::Partial { step: state.step },
        None => RunProgress::Missing,
    }
}

/// Forward + backward ≈ 3 × forward MACs per image, over every training image of every epoch.
pub fn training_macs(c: &RunConfig) -> Option<f64> {
    let images = match &c.data.synthetic {
        Some(s) => (s.classes * s.train_per_class) as f64,
        None => {
            let classes = c.data.classes.unwrap_or(c.model.num_classes) as f64;
            match c.data.train_images_per_class {
                Some(per_class) => per_class as f64 * classes,
                // Without a subset the size is known only for ImageNet: 1,281,167 images
                // over 1,000 classes (an upper bound per class when fewer are selected).
                None if c.model.num_classes == 1000 => 1281.167 * classes,
                None => return None,
            }
        }
    };
    let macs = summarize(&c.model, c.model.image_size).ok()?.macs as f64;
    Some(3.0 * macs * images * c.train.epochs)
}
