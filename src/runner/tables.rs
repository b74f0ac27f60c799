//! The evaluations of the tables: each row's runs under the table's crop protocol and
//! evaluation set, one evaluation per seed (or one for an ensemble), cached under
//! `results/evals/<table>-<row>-<hash>/eval.parquet` like training runs.

use std::collections::hash_map::{Entry, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Device;

use super::datasets::{prepare_datasets, train_holdout, HOLDOUT_PER_CLASS};
use super::outcome::RunFailure;
use super::plan::run_dir;
use crate::data::Dataset;
use crate::eval::{
    ensemble_of_stored, evaluate, protocol_for, read_eval_parquet, read_probabilities,
    write_eval_parquet, write_probabilities, EvalError, EvalRecord, EvalReport, EvalRequest,
    ModelWeights,
};
use crate::experiment::{EvalSet, EvalSplit, Experiment, ResolvedRun, RunConfig, TableSpec};
use crate::interrupt::StopSignal;
use crate::store::RunLock;
use crate::train::final_weights_path;

/// A model of an evaluation: a trained run's final weights, or released weights.
pub struct Member<'a> {
    /// How the evaluation record names it: the run folder, or the weight file.
    pub name: String,
    pub config: &'a RunConfig,
    pub weights: PathBuf,
    /// What identifies the weights: the run's hash, or the file's path with the data setting.
    key: String,
}

/// One evaluation a table row needs: a single model (one seed) or an ensemble.
pub struct EvalJob<'a> {
    pub table: &'a TableSpec,
    pub row: usize,
    pub members: Vec<Member<'a>>,
}

impl EvalJob<'_> {
    /// The table's `skip_bad_images`, else the first run's `data.skip_bad_images`.
    pub fn skips_bad_images(&self) -> bool {
        self.table
            .skip_bad_images
            .unwrap_or(self.members[0].config.data.skip_bad_images)
    }

    /// A stable name: the table, the row label and a hash of everything that sets the result.
    pub fn folder(&self) -> String {
        let label: String = self.table.rows[self.row]
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let members: Vec<&Member> = self.members.iter().collect();
        let key = self.settings_key(&members);
        let hash = crate::hashing::fnv1a64(key.as_bytes());
        format!("{}-{}-{:08x}", self.table.id, label, hash as u32)
    }

    /// Where the probabilities of `member` evaluated alone under this job's settings are kept
    /// (`<stem>.safetensors` and `<stem>.json`), whichever table the evaluation was for.
    pub fn member_probabilities(&self, results: &Path, member: &Member) -> PathBuf {
        let hash = crate::hashing::fnv1a64(self.settings_key(&[member]).as_bytes());
        results
            .join("evals")
            .join("probabilities")
            .join(format!("{hash:016x}"))
    }

    /// Everything that sets the result of evaluating `members` as this job does.
    fn settings_key(&self, members: &[&Member]) -> String {
        let mut key = format!(
            "{}|{}|{}|{}",
            self.table.crops,
            members
                .iter()
                .map(|m| m.key.as_str())
                .collect::<Vec<_>>()
                .join(","),
            eval_set_key(self.table.eval_set),
            members[0].config.data.eval_crop_fraction
        );
        if let Some(n) = self.table.images_per_class {
            key.push_str(&format!("|{n} per class"));
        }
        if self.skips_bad_images() {
            key.push_str("|skip bad images");
        }
        if self.table.split == EvalSplit::TrainHoldout {
            key.push_str("|train holdout");
        }
        key
    }
}

/// How a table's `eval_set` enters its evaluations' folder names. These strings are frozen:
/// they name the evaluations already stored (they were once the sets' Rust names).
fn eval_set_key(set: Option<EvalSet>) -> &'static str {
    match set {
        None => "None",
        Some(EvalSet::All) => "Some(All)",
        Some(EvalSet::Nonblacklisted) => "Some(Nonblacklisted)",
    }
}

/// Every evaluation of the experiment's tables, in table and row order.
pub fn eval_jobs<'a>(experiment: &'a Experiment, results: &Path) -> Vec<EvalJob<'a>> {
    let mut jobs = Vec::new();
    for (t, table) in experiment.tables.iter().enumerate() {
        for (row, spec) in table.rows.iter().enumerate() {
            let members: Vec<Member> = match experiment.released.get(&(t, row)) {
                Some(released) => released
                    .weights
                    .iter()
                    .map(|w| Member {
                        name: w.display().to_string(),
                        config: &released.config,
                        weights: w.clone(),
                        // The weights and the data they are evaluated on (a run's hash
                        // covers its data; released weights have only this).
                        key: format!(
                            "{}|{}",
                            w.display(),
                            serde_json::to_string(&released.config.data).unwrap_or_default()
                        ),
                    })
                    .collect(),
                None => spec
                    .runs
                    .iter()
                    .map(|r| run_member(&experiment.runs[r], results))
                    .collect(),
            };
            if spec.ensemble {
                jobs.push(EvalJob {
                    table,
                    row,
                    members,
                });
            } else {
                jobs.extend(members.into_iter().map(|m| EvalJob {
                    table,
                    row,
                    members: vec![m],
                }));
            }
        }
    }
    jobs
}

fn run_member<'a>(run: &'a ResolvedRun, results: &Path) -> Member<'a> {
    Member {
        name: run.folder_name(),
        config: &run.config,
        weights: final_weights_path(&run_dir(results, run)),
        key: run.hash.clone(),
    }
}

pub fn eval_path(results: &Path, job: &EvalJob) -> PathBuf {
    results
        .join("evals")
        .join(job.folder())
        .join("eval.parquet")
}

/// Runs the evaluations that are not stored yet and whose runs have finished; returns how
/// many ran, and the problems of those that could not (a missing or diverged run, an error).
/// Stops early, without an error, when `stop` is requested.
pub fn evaluate_tables(
    experiment: &Experiment,
    results: &Path,
    device: &Device,
    threads: usize,
    stop: StopSignal,
) -> (usize, Vec<RunFailure>) {
    let (mut done, mut problems) = (0, Vec::new());
    // Rows of one table share their validation set: scan the folders once per data setting.
    let mut val_sets: HashMap<String, Dataset> = HashMap::new();
    let mut jobs = eval_jobs(experiment, results);
    // Single models first: an ensemble then averages its members' stored probabilities.
    jobs.sort_by_key(|job| job.members.len() > 1);
    for job in jobs {
        let path = eval_path(results, &job);
        if stop.requested() {
            break;
        }
        if path.exists() {
            continue;
        }
        match evaluate_job(&job, results, &path, device, threads, stop, &mut val_sets) {
            Ok(true) => done += 1,
            Ok(false) => {}
            Err(_) if stop.requested() => break,
            Err(e) => problems.push(RunFailure {
                message: format!(
                    "{} row `{}`: {}",
                    job.table.id, job.table.rows[job.row].label, e.message
                ),
                bad_input: e.bad_input,
            }),
        }
    }
    (done, problems)
}

fn evaluate_job(
    job: &EvalJob,
    results: &Path,
    path: &Path,
    device: &Device,
    threads: usize,
    stop: StopSignal,
    val_sets: &mut HashMap<String, Dataset>,
) -> Result<bool, RunFailure> {
    if job.members.iter().any(|m| !m.weights.is_file()) {
        return Ok(false); // a run is missing or diverged: the table says "not run"
    }
    let dir = path.parent().expect("eval.parquet has a folder");
    std::fs::create_dir_all(dir)
        .map_err(|e| RunFailure::new(format!("cannot create {}: {e}", dir.display())))?;
    let _lock = RunLock::acquire(dir).map_err(RunFailure::new)?;
    if path.exists() {
        return Ok(false);
    }
    let first = job.members[0].config;
    let mut data_cfg = first.data.clone();
    // The blacklist is ILSVRC's: generated (smoke) data is always evaluated whole.
    if let (Some(set), None) = (job.table.eval_set, &data_cfg.synthetic) {
        data_cfg.eval_set = set;
    }
    if let Some(n) = job.table.images_per_class {
        data_cfg.val_images_per_class = Some(n);
    }
    let key = format!(
        "{}|{}",
        serde_json::to_string(&data_cfg).map_err(RunFailure::new)?,
        serde_json::to_string(&job.table.split).map_err(RunFailure::new)?
    );
    let val = match val_sets.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(
            match job.table.split {
                EvalSplit::Val => prepare_datasets(&data_cfg, results).map(|d| d.val),
                EvalSplit::TrainHoldout => train_holdout(
                    &data_cfg,
                    results,
                    job.table.images_per_class.unwrap_or(HOLDOUT_PER_CLASS),
                ),
            }
            .map_err(RunFailure::bad_input)?,
        ),
    };
    let input = first.model.image_size as u32;
    let protocol = protocol_for(job.table.crops, first.data.eval_crop_fraction, input)
        .map_err(RunFailure::bad_input)?;
    let models = job
        .members
        .iter()
        .map(|m| ModelWeights {
            config: m.config.model.clone(),
            weights: m.weights.clone(),
        })
        .collect();
    let request = EvalRequest {
        models,
        dataset: val,
        protocol,
        input_size: input,
        batch_size: first.train.eval_batch_size.max(job.table.crops as usize),
        threads,
        device: device.clone(),
        skip_bad_images: job.skips_bad_images(),
        show_progress: true,
        keep_probabilities: job.members.len() == 1,
        stop,
    };
    let report = match from_stored_members(job, results, &request)? {
        Some(report) => report,
        None => evaluate(&request).map_err(|e| match e {
            EvalError::Image(e) => RunFailure::bad_input(format!(
                "{e} (set `skip_bad_images: true` on the table to leave unreadable images out)"
            )),
            e if e.is_bad_input() => RunFailure::bad_input(e),
            e => RunFailure::new(e),
        })?,
    };
    if let [member] = job.members.as_slice() {
        let stem = job.member_probabilities(results, member);
        let stored = std::fs::create_dir_all(stem.parent().expect("a folder"))
            .map_err(|e| e.to_string())
            .and_then(|_| write_probabilities(&stem, &report).map_err(|e| e.to_string()));
        if let Err(e) = stored {
            tracing::warn!(
                "{}: {e}; ensembles with this model will evaluate it again",
                stem.display()
            );
        }
    }
    let mut record = report.record.clone();
    record.models = job.members.iter().map(|m| m.name.clone()).collect();
    write_eval_parquet(path, std::slice::from_ref(&record)).map_err(RunFailure::new)?;
    // One line per evaluation (a set of tables makes dozens); the crop protocol is stated
    // under the report's table and stored in eval.parquet.
    tracing::info!(
        "{} row `{}` ({}, {} crops): top-1 error {:.2} %, top-5 error {:.2} % on {} images",
        job.table.id,
        job.table.rows[job.row].label,
        record.models.join(" + "),
        report.record.crops,
        100.0 * report.record.top1_err,
        100.0 * report.record.top5_err,
        report.record.images
    );
    if !report.skipped.is_empty() {
        tracing::warn!(
            "{} row `{}`: {} unreadable image(s) left out of the errors (listed in {})",
            job.table.id,
            job.table.rows[job.row].label,
            report.skipped.len(),
            path.display()
        );
    }
    Ok(true)
}

/// The evaluation of an ensemble job from its members' stored single-model probabilities,
/// when every member has them for exactly this data and these crops; `None` otherwise.
fn from_stored_members(
    job: &EvalJob,
    results: &Path,
    request: &EvalRequest,
) -> Result<Option<EvalReport>, RunFailure> {
    if job.members.len() < 2 {
        return Ok(None);
    }
    let mut stored = Vec::new();
    for member in &job.members {
        let stem = job.member_probabilities(results, member);
        match read_probabilities(&stem) {
            Ok(Some(p)) => stored.push(p),
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!("{e}; the ensemble runs its members again");
                return Ok(None);
            }
        }
    }
    let description = request.protocol.describe(request.input_size);
    if stored.iter().any(|p| p.crop_definition != description) {
        return Ok(None);
    }
    let report = ensemble_of_stored(&stored, request.dataset, request.protocol.num_crops())
        .map_err(RunFailure::new)?;
    if report.is_some() {
        tracing::info!(
            "{} row `{}`: averaged from its {} members' stored probabilities",
            job.table.id,
            job.table.rows[job.row].label,
            job.members.len()
        );
    }
    Ok(report)
}

/// Evaluation results of one table row, as the runner stored them.
pub type RowResults = Vec<EvalRecord>;

/// The stored evaluations of one table row, for the report.
pub fn row_results(
    experiment: &Experiment,
    results: &Path,
    table: &TableSpec,
    row: usize,
) -> Vec<EvalRecord> {
    eval_jobs(experiment, results)
        .into_iter()
        .filter(|j| j.table.id == table.id && j.row == row)
        .filter_map(|j| read_eval_parquet(&eval_path(results, &j)).ok())
        .flatten()
        .collect()
}

#[cfg(test)]
mod folder_tests {
    /// Every evaluation folder of the CIFAR-10 reproduction's tables, as its results store
    /// names them: renaming a variant or a field must not orphan a cached evaluation.
    #[test]
    fn the_mini_tables_keep_their_evaluation_folders() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let want =
            std::fs::read_to_string(root.join("tests/fixtures/mini_eval_folders.txt")).unwrap();
        let mut got = String::new();
        for t in ["table2", "table3", "table4", "table5"] {
            let path = root.join(format!("experiments/mini/{t}.yaml"));
            let e = crate::experiment::load_experiment(&path, &Default::default()).unwrap();
            for j in super::eval_jobs(&e, std::path::Path::new("results")) {
                got.push_str(&format!("{t} {}\n", j.folder()));
            }
        }
        assert_eq!(got.lines().count(), 119);
        assert_eq!(got, want);
    }
}
