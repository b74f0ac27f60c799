//! The evaluations of the tables: each row's runs under the table's crop protocol and
//! evaluation set, one evaluation per seed (or one for an ensemble), cached under
//! `results/evals/<table>-<row>-<hash>/eval.parquet` like training runs.

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::datasets::prepare_datasets;
use super::plan::run_dir;
use crate::eval::{evaluate, protocol_for, read_eval_parquet, write_eval_parquet, EvalRecord, EvalRequest, ModelSpec};
use crate::report::EvalResult;
use crate::spec::{Experiment, ResolvedRun, TableSpec};
use crate::store::RunLock;
use crate::train::final_weights_path;

/// One evaluation a table row needs: a single run (one seed) or an ensemble.
pub struct EvalJob<'a> {
    pub table: &'a TableSpec,
    pub row: usize,
    pub runs: Vec<&'a ResolvedRun>,
}

impl EvalJob<'_> {
    /// A stable name: the table, the row label and a hash of everything that sets the result.
    pub fn folder(&self) -> String {
        let label: String = self.table.rows[self.row].label.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let key = format!(
            "{}|{}|{:?}|{}",
            self.table.crops,
            self.runs.iter().map(|r| r.hash.as_str()).collect::<Vec<_>>().join(","),
            self.table.eval_set,
            self.runs[0].config.data.eval_crop_fraction
        );
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
        format!("{}-{}-{:08x}", self.table.id, label, hash as u32)
    }
}

/// Every evaluation of the experiment's tables, in table and row order.
pub fn eval_jobs(experiment: &Experiment) -> Vec<EvalJob<'_>> {
    let mut jobs = Vec::new();
    for table in &experiment.tables {
        for (row, spec) in table.rows.iter().enumerate() {
            let runs: Vec<&ResolvedRun> = spec.runs.iter().map(|r| &experiment.runs[r]).collect();
            if spec.ensemble {
                jobs.push(EvalJob { table, row, runs });
            } else {
                jobs.extend(runs.into_iter().map(|r| EvalJob { table, row, runs: vec![r] }));
            }
        }
    }
    jobs
}

pub fn eval_path(results: &Path, job: &EvalJob) -> PathBuf {
    results.join("evals").join(job.folder()).join("eval.parquet")
}

/// Runs the evaluations that are not stored yet and whose runs have finished; returns how
/// many ran, and the problems of those that could not (a missing or diverged run, an error).
pub fn evaluate_tables(experiment: &Experiment, results: &Path, device: &Device, threads: usize) -> (usize, Vec<String>) {
    let (mut done, mut problems) = (0, Vec::new());
    for job in eval_jobs(experiment) {
        let path = eval_path(results, &job);
        if path.exists() {
            continue;
        }
        match evaluate_job(&job, results, &path, device, threads) {
            Ok(true) => done += 1,
            Ok(false) => {}
            Err(e) => problems.push(format!("{} row `{}`: {e}", job.table.id, job.table.rows[job.row].label)),
        }
    }
    (done, problems)
}

fn evaluate_job(job: &EvalJob, results: &Path, path: &Path, device: &Device, threads: usize) -> Result<bool, String> {
    let weights: Vec<PathBuf> = job.runs.iter().map(|r| final_weights_path(&run_dir(results, r))).collect();
    if weights.iter().any(|w| !w.is_file()) {
        return Ok(false); // a run is missing or diverged: the table says "not run"
    }
    let dir = path.parent().expect("eval.parquet has a folder");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let _lock = RunLock::acquire(dir).map_err(|e| e.to_string())?;
    if path.exists() {
        return Ok(false);
    }
    let first = &job.runs[0].config;
    let mut data_cfg = first.data.clone();
    // The blacklist is ILSVRC's: generated (smoke) data is always evaluated whole.
    if let (Some(set), None) = (job.table.eval_set, &data_cfg.synthetic) {
        data_cfg.eval_set = set;
    }
    let data = prepare_datasets(&data_cfg, results)?;
    let input = first.model.image_size as u32;
    let protocol = protocol_for(job.table.crops, first.data.eval_crop_fraction, input).map_err(|e| e.to_string())?;
    let models = job.runs.iter().zip(weights).map(|(r, w)| ModelSpec { config: r.config.model.clone(), weights: w }).collect();
    let request = EvalRequest {
        models,
        dataset: &data.val,
        protocol,
        input_size: input,
        batch_size: first.train.eval_batch_size.max(job.table.crops as usize),
        threads: if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads },
        device: device.clone(),
    };
    let report = evaluate(&request).map_err(|e| e.to_string())?;
    let mut record = report.record();
    record.models = job.runs.iter().map(|r| r.folder_name()).collect();
    write_eval_parquet(path, &[record]).map_err(|e| e.to_string())?;
    tracing::info!("{} row `{}`: {}", job.table.id, job.table.rows[job.row].label, report);
    Ok(true)
}

/// The stored evaluations of one table row, for the report.
pub fn row_results(experiment: &Experiment, results: &Path, table: &TableSpec, row: usize) -> Vec<EvalResult> {
    eval_jobs(experiment)
        .into_iter()
        .filter(|j| j.table.id == table.id && j.row == row)
        .filter_map(|j| read_eval_parquet(&eval_path(results, &j)).ok())
        .flatten()
        .map(|r: EvalRecord| EvalResult { top1_err: r.top1_err, top5_err: r.top5_err, images: r.images, crops: r.crop_definition, eval_set: r.eval_set })
        .collect()
}
