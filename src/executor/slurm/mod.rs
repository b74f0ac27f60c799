//! The `slurm` executor: one batch job per missing run, each running `repro` on that run in
//! the same results folder (which must be on a filesystem the nodes share).
//!
//! Before submitting, the run folder's `job.json` is read under a submit lock: a run whose
//! job is still queued or running is attached to, not submitted twice. The waiting process
//! asks the queue once per poll interval for all its jobs together; a job that leaves the
//! queue before its run is finished (cancelled, node failure, killed) is submitted again
//! and resumes from the run's checkpoint. Jobs requeue themselves ahead of a time limit
//! (see [`script`]).

mod queue;
mod record;
mod script;
mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use queue::{Queue, QueuedJob, SlurmCommands};
pub use record::{JobRecord, JOB_JSON, SCRIPT};

use super::outcome::{folder_outcome, log_tail};
use super::{finished_and_missing, Executor, JobCommand};
use crate::experiment::{Experiment, SlurmSpec};
use crate::interrupt::StopSignal;
use crate::runner::{progress_of, PlannedRun, RunFailure, RunOptions, RunProgress, RunResult};
use crate::store::{RunDir, RunLock};
use record::SubmitLock;
use script::{batch_script, ScriptInput};
pub use settings::Settings;

pub struct SlurmExecutor {
    settings: Settings,
    command: JobCommand,
    results: PathBuf,
    only: Option<Vec<String>>,
    stop: StopSignal,
    wait: bool,
    queue: Box<dyn Queue>,
}

impl SlurmExecutor {
    pub fn new(
        spec: &SlurmSpec,
        options: &RunOptions,
        command: JobCommand,
        wait: bool,
    ) -> Result<Self, String> {
        SlurmCommands::check_available()?;
        Ok(Self::with_queue(
            spec,
            options,
            command,
            wait,
            Box::new(SlurmCommands),
        ))
    }

    /// With another [`Queue`] than Slurm's commands (tests of the bookkeeping).
    pub fn with_queue(
        spec: &SlurmSpec,
        options: &RunOptions,
        command: JobCommand,
        wait: bool,
        queue: Box<dyn Queue>,
    ) -> Self {
        Self {
            settings: Settings::from_spec(spec.clone()),
            command,
            results: options.results.clone(),
            only: options.only.clone(),
            stop: options.stop,
            wait,
            queue,
        }
    }

    /// Whether the run needs a job: finished meanwhile, attached to its queued or running
    /// job, or needing one — then its submit lock is held until the job is recorded.
    fn check(
        &self,
        planned: &PlannedRun,
        queued: &mut BTreeMap<String, QueuedJob>,
    ) -> Result<Check, RunFailure> {
        let dir = &planned.dir;
        RunDir::new(dir)
            .create()
            .map_err(|e| RunFailure::new(format!("cannot create {}: {e}", dir.display())))?;
        let lock = SubmitLock::take(dir).map_err(RunFailure::new)?;
        let progress = progress_of(dir);
        if matches!(progress, RunProgress::Done | RunProgress::Diverged { .. }) {
            return Ok(Check::Finished(progress));
        }
        let record = JobRecord::read(dir);
        if let Some((id, job)) = self
            .still_queued(&record, queued)
            .map_err(RunFailure::new)?
        {
            return Ok(Check::Attached(id, job));
        }
        // A process that is no job of ours (an inline `repro run`) may be training it.
        drop(RunLock::acquire(dir).map_err(|e| RunFailure::new(e.to_string()))?);
        Ok(Check::Needed(lock, record))
    }

    /// The recorded job, when it is still in the queue. A job missing from `queued` may have
    /// been submitted by another process since that look: the queue is asked again first.
    fn still_queued(
        &self,
        record: &Option<JobRecord>,
        queued: &mut BTreeMap<String, QueuedJob>,
    ) -> Result<Option<(String, QueuedJob)>, String> {
        let Some(r) = record else {
            return Ok(None);
        };
        if !queued.contains_key(&r.job_id) {
            *queued = self.queue.snapshot()?;
        }
        Ok(queued
            .get(&r.job_id)
            .map(|job| (r.job_id.clone(), job.clone())))
    }

    /// Submits the run's job unless one is queued or running already (or the run finished
    /// meanwhile), under the run's submit lock.
    fn claim(
        &self,
        experiment: &Experiment,
        planned: &PlannedRun,
        queued: &mut BTreeMap<String, QueuedJob>,
    ) -> Result<Claim, RunFailure> {
        match self.check(planned, queued)? {
            Check::Finished(progress) => Ok(Claim::Finished(progress)),
            Check::Attached(id, _) => Ok(Claim::Attached(id)),
            Check::Needed(_lock, record) => {
                let id = self.submit(experiment, vec![(planned, record)]).remove(0);
                Ok(Claim::Submitted(id.map_err(RunFailure::new)?))
            }
        }
    }

    /// Writes each run's batch script into its folder and submits the runs, one job each, or
    /// as one job array when `array_parallelism` is set and there are several; records each
    /// submitted run's job id at once (so that no later `repro run` submits it again). Returns
    /// each run's job id or why it has none, in the order of `runs`.
    fn submit(
        &self,
        experiment: &Experiment,
        runs: Vec<(&PlannedRun, Option<JobRecord>)>,
    ) -> Vec<Result<String, String>> {
        let ids = match self.submit_jobs(experiment, &runs) {
            Ok(ids) => ids,
            Err(e) => vec![Err(e); runs.len()],
        };
        runs.into_iter()
            .zip(ids)
            .map(|((planned, record), id)| {
                let id = id?;
                JobRecord::succeeded_by(record, id.clone()).write(&planned.dir)?;
                Ok(id)
            })
            .collect()
    }

    fn submit_jobs(
        &self,
        experiment: &Experiment,
        runs: &[(&PlannedRun, Option<JobRecord>)],
    ) -> Result<Vec<Result<String, String>>, String> {
        let threads = self.settings.spec.cpus_per_task.map(|c| c as usize);
        let device = self.settings.device();
        let ranks = self.settings.ranks() > 1;
        let mut scripts = Vec::new();
        for (planned, _) in runs {
            let dir = absolute(&planned.dir);
            let argv = self
                .command
                .argv(&experiment.path, &planned.run.name, device, threads);
            let about = format!(
                "run {} of {} ({}); `sbatch` this file to train it again",
                planned.run.name,
                experiment.name,
                experiment.path.display()
            );
            let text = batch_script(
                &self.settings,
                &ScriptInput {
                    job_name: &format!("repro-{}-{}", experiment.name, planned.run.name),
                    log_dir: &dir,
                    ranks,
                    cwd: &self.command.cwd,
                    argv: &argv,
                    about: &about,
                    array: None,
                },
            );
            let script = dir.join(SCRIPT);
            crate::store::write_bytes(&script, text.as_bytes()).map_err(|e| e.to_string())?;
            scripts.push(script);
        }
        let ids = match (self.settings.spec.array_parallelism, runs.len()) {
            (Some(at_once), n) if n > 1 => {
                let tasks: Vec<(String, PathBuf)> = runs
                    .iter()
                    .map(|(p, _)| (p.run.name.clone(), absolute(&p.dir)))
                    .collect();
                let jobs = absolute(&self.command.results.join("jobs"));
                std::fs::create_dir_all(&jobs)
                    .map_err(|e| format!("cannot create {}: {e}", jobs.display()))?;
                let argv = self
                    .command
                    .argv(&experiment.path, script::ARRAY_RUN, device, threads);
                let about = format!(
                    "runs {} of {} ({}), one per array task",
                    tasks
                        .iter()
                        .map(|t| t.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    experiment.name,
                    experiment.path.display()
                );
                let text = batch_script(
                    &self.settings,
                    &ScriptInput {
                        job_name: &format!("repro-{}", experiment.name),
                        log_dir: &jobs,
                        ranks,
                        cwd: &self.command.cwd,
                        argv: &argv,
                        about: &about,
                        array: Some(script::ArrayTasks {
                            runs: &tasks,
                            at_once: Some(at_once),
                        }),
                    },
                );
                let script = jobs.join(format!(
                    "{}-array-{}.sh",
                    experiment.name,
                    crate::store::clock::now_rfc3339().replace(':', "")
                ));
                crate::store::write_bytes(&script, text.as_bytes()).map_err(|e| e.to_string())?;
                let array = self.queue.submit(&script, &[])?;
                (0..tasks.len())
                    .map(|i| Ok(format!("{array}_{i}")))
                    .collect()
            }
            _ => scripts
                .iter()
                .map(|script| self.queue.submit(script, &[]))
                .collect(),
        };
        Ok(ids)
    }

    /// After `id` left the queue: the run's result, or the id of the job submitted again.
    fn ended(
        &self,
        experiment: &Experiment,
        w: &mut Watched,
        queued: &mut BTreeMap<String, QueuedJob>,
    ) -> Option<RunResult> {
        let dir = &w.planned.dir;
        let by = format!("Slurm job {}", w.job_id);
        let progress = progress_of(dir);
        if matches!(progress, RunProgress::Done | RunProgress::Diverged { .. }) {
            return Some(RunResult::Delegated { progress, by });
        }
        let exit_code = std::fs::read_to_string(dir.join(format!("slurm-{}.exit", w.job_id)))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        let ended = self
            .queue
            .final_state(&w.job_id)
            .or_else(|| exit_code.map(|c| format!("exit code {c}")))
            .unwrap_or_else(|| "left the queue".to_string());
        let log = dir.join(format!("slurm-{}.out", w.job_id));
        // 0, 1 and 2: repro itself ended the job (a failure, bad input): running it again
        // would end the same way. Anything else (no status: cancelled, killed, node lost;
        // 3: stopped by a signal) resumes from the checkpoint.
        let resumable = !matches!(exit_code, Some(0..=2));
        if !resumable || w.resubmits_left == 0 {
            return Some(folder_outcome(
                &w.planned,
                progress,
                &by,
                &ended,
                &log,
                exit_code == Some(2),
            ));
        }
        let at = match progress {
            RunProgress::Partial { step } => format!("at step {step}"),
            _ => "before its first checkpoint".to_string(),
        };
        let follow = |w: &mut Watched, id: String, how: &str| {
            eprintln!(
                "{}: {by} ended ({ended}) {at}; {how} Slurm job {id}",
                w.planned.run.name
            );
            w.job_id = id;
            w.resubmits_left -= 1;
            w.last_state.clear();
            None
        };
        match self.claim(experiment, &w.planned, queued) {
            Ok(Claim::Submitted(id)) => follow(w, id, "submitted again as"),
            Ok(Claim::Attached(id)) => follow(w, id, "another repro run submitted it again as"),
            Ok(Claim::Finished(progress)) => Some(RunResult::Delegated { progress, by }),
            Err(f) => Some(RunResult::Failed(f)),
        }
    }

    /// Waits until every watched job's run is settled, or a stop is asked for.
    fn wait_for(
        &self,
        experiment: &Experiment,
        mut watched: Vec<Watched>,
        out: &mut Vec<(PlannedRun, RunResult)>,
    ) -> Vec<Watched> {
        while !watched.is_empty() {
            let next_poll = Instant::now() + self.settings.poll;
            while Instant::now() < next_poll && !self.stop.requested() {
                std::thread::sleep(Duration::from_millis(200));
            }
            if self.stop.requested() {
                break;
            }
            let mut queued = match self.queue.snapshot() {
                Ok(q) => q,
                Err(e) => {
                    tracing::warn!("asking the queue failed, trying again later: {e}");
                    continue;
                }
            };
            let mut still = Vec::new();
            for mut w in watched {
                if let Some(job) = queued.get(&w.job_id) {
                    let state = describe_queued(job);
                    if state != w.last_state {
                        eprintln!("{}: Slurm job {} {state}", w.planned.run.name, w.job_id);
                        w.last_state = state;
                    }
                    still.push(w);
                    continue;
                }
                match self.ended(experiment, &mut w, &mut queued) {
                    Some(result) => out.push((w.planned, result)),
                    None => still.push(w),
                }
            }
            watched = still;
        }
        watched
    }
}

enum Claim {
    Submitted(String),
    Attached(String),
    Finished(RunProgress),
}

enum Check {
    Finished(RunProgress),
    Attached(String, QueuedJob),
    /// No job queued or running: one is needed. The submit lock stays held until it is.
    Needed(SubmitLock, Option<JobRecord>),
}

impl SlurmExecutor {
    fn watch(&self, planned: PlannedRun, job_id: String) -> Watched {
        Watched {
            planned,
            job_id,
            resubmits_left: self.settings.max_resubmits,
            last_state: String::new(),
        }
    }
}

/// A run whose job is being waited for.
struct Watched {
    planned: PlannedRun,
    job_id: String,
    resubmits_left: u32,
    last_state: String,
}

impl Executor for SlurmExecutor {
    fn train(&self, experiment: &Experiment) -> Vec<(PlannedRun, RunResult)> {
        let (mut out, missing) =
            finished_and_missing(experiment, &self.results, self.only.as_deref());
        let mut watched = Vec::new();
        let mut queued = BTreeMap::new();
        let mut needed = Vec::new();
        let ranks = self.settings.ranks() as usize;
        for planned in missing {
            if self.stop.requested() {
                break;
            }
            if ranks > 1 && planned.run.config.train.replicas != ranks {
                let message = format!(
                    "jobs of {ranks} ranks (executor.slurm nodes × tasks_per_node) train runs \
                     with `train.replicas: {ranks}`; this run has {}: set it in the file so that \
                     the run's name and hash are the same for the jobs",
                    planned.run.config.train.replicas
                );
                out.push((planned, RunResult::Failed(RunFailure::bad_input(message))));
                continue;
            }
            match self.check(&planned, &mut queued) {
                Ok(Check::Finished(progress)) => out.push((planned, RunResult::Reused(progress))),
                Ok(Check::Attached(id, job)) => {
                    eprintln!(
                        "{}: Slurm job {id} is already {}{}",
                        planned.run.name,
                        describe_queued(&job),
                        if self.wait { "; waiting for it" } else { "" }
                    );
                    let state = match job.state.as_str() {
                        "RUNNING" | "COMPLETING" => "running already",
                        _ => "queued already",
                    };
                    watched.push((self.watch(planned, id), state.to_string()));
                }
                Ok(Check::Needed(lock, record)) => needed.push((planned, lock, record)),
                Err(f) => out.push((planned, RunResult::Failed(f))),
            }
        }
        if !needed.is_empty() {
            let runs = needed.iter().map(|(p, _, r)| (p, r.clone())).collect();
            let ids = self.submit(experiment, runs);
            for ((planned, _lock, _), id) in needed.into_iter().zip(ids) {
                match id {
                    Ok(id) => {
                        eprintln!(
                            "{}: submitted as Slurm job {id} (script {})",
                            planned.run.name,
                            planned.dir.join(SCRIPT).display()
                        );
                        watched.push((self.watch(planned, id), "submitted".to_string()));
                    }
                    Err(e) => out.push((planned, RunResult::Failed(RunFailure::new(e)))),
                }
            }
        }
        if !self.wait && !watched.is_empty() {
            let ids: Vec<&str> = watched.iter().map(|(w, _)| w.job_id.as_str()).collect();
            match self.submit_report_job(experiment, &ids, &mut queued) {
                Ok(line) => eprintln!("{}: {line}", experiment.name),
                Err(e) => eprintln!(
                    "{}: no job for the tables and the report ({e}); a later `repro run` makes them",
                    experiment.name
                ),
            }
        }
        let left = match self.wait {
            true => {
                let w = watched.into_iter().map(|(w, _)| w).collect();
                self.wait_for(experiment, w, &mut out)
                    .into_iter()
                    .map(|w| (w, "still in the queue".to_string()))
                    .collect()
            }
            false => watched,
        };
        for (w, state) in left {
            let by = format!("Slurm job {}", w.job_id);
            out.push((w.planned, RunResult::Queued { state, by }));
        }
        out.sort_by(|a, b| a.0.run.name.cmp(&b.0.run.name));
        out
    }
}

impl SlurmExecutor {
    /// With `--no-wait`: a job that makes the tables and the report once the runs' jobs have
    /// all succeeded (`--dependency=afterok`; Slurm drops it when one fails), unless one is
    /// queued already. Its script, record and log are in `<results>/jobs/`.
    fn submit_report_job(
        &self,
        experiment: &Experiment,
        run_jobs: &[&str],
        queued: &mut BTreeMap<String, QueuedJob>,
    ) -> Result<String, String> {
        let dir = self.command.results.join("jobs");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _submitting = SubmitLock::take(&dir)?;
        let stem = format!("{}-report", experiment.name);
        let record_path = dir.join(format!("{stem}.json"));
        let record = JobRecord::read_file(&record_path);
        if let Some((id, job)) = self.still_queued(&record, queued)? {
            return Ok(format!(
                "the tables and the report: Slurm job {id} is already {}",
                describe_queued(&job)
            ));
        }
        let argv = self.command.report_argv(
            &experiment.path,
            self.settings.device(),
            self.settings.spec.cpus_per_task.map(|c| c as usize),
        );
        let job_name = format!("repro-{}-report", experiment.name);
        let about = format!(
            "the tables and the report of {} ({})",
            experiment.name,
            experiment.path.display()
        );
        let text = batch_script(
            &self.settings,
            &ScriptInput {
                job_name: &job_name,
                log_dir: &dir,
                ranks: false,
                cwd: &self.command.cwd,
                argv: &argv,
                about: &about,
                array: None,
            },
        );
        let script = dir.join(format!("{stem}.sh"));
        crate::store::write_bytes(&script, text.as_bytes()).map_err(|e| e.to_string())?;
        let extra = vec![
            format!("--dependency=afterok:{}", run_jobs.join(":")),
            "--kill-on-invalid-dep=yes".to_string(),
        ];
        let id = self.queue.submit(&script, &extra)?;
        JobRecord::succeeded_by(record, id.clone()).write_file(&record_path)?;
        Ok(format!(
            "the tables and the report: Slurm job {id}, once jobs {} have succeeded (script {})",
            run_jobs.join(", "),
            script.display()
        ))
    }
}

/// `running on node1`, `pending (Priority)`.
fn describe_queued(job: &QueuedJob) -> String {
    let state = job.state.to_lowercase();
    match (job.state.as_str(), job.nodes.is_empty()) {
        ("RUNNING" | "COMPLETING", false) => format!("{state} on {}", job.nodes),
        _ if !job.reason.is_empty() && job.reason != "None" => format!("{state} ({})", job.reason),
        _ => state,
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The step of the last `step N` progress line in the end of a job's log.
fn last_logged_step(log: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))
        .ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    String::from_utf8_lossy(&bytes).lines().rev().find_map(|l| {
        l.split(" step ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// For `repro status`: the Slurm job of each planned run whose folder has one, as a plain
/// phrase (`Slurm job 12: running on node1`, or how it ended, with its log's last lines when
/// the run is not finished); `None` for runs without a job. Asks the queue once.
pub fn job_state_lines(runs: &[&PlannedRun]) -> Vec<Option<String>> {
    let records: Vec<Option<JobRecord>> = runs.iter().map(|p| JobRecord::read(&p.dir)).collect();
    if records.iter().all(Option::is_none) {
        return vec![None; runs.len()];
    }
    let queue = SlurmCommands;
    let queued = queue.snapshot();
    runs.iter()
        .zip(records)
        .map(|(planned, record)| {
            let dir = &planned.dir;
            let r = record?;
            let id = &r.job_id;
            Some(match &queued {
                Err(e) => format!("Slurm job {id} (the queue cannot be read: {e})"),
                Ok(q) => match q.get(id) {
                    Some(job) => {
                        let at = match job.state.as_str() {
                            "RUNNING" => last_logged_step(&dir.join(format!("slurm-{id}.out")))
                                .map(|k| format!(", at step {k}"))
                                .unwrap_or_default(),
                            _ => String::new(),
                        };
                        format!("Slurm job {id}: {}{at}", describe_queued(job))
                    }
                    None => {
                        let ended = queue
                            .final_state(id)
                            .unwrap_or_else(|| "no longer in the queue".to_string());
                        let tail = match planned.progress {
                            RunProgress::Done | RunProgress::Diverged { .. } => None,
                            _ => log_tail(&dir.join(format!("slurm-{id}.out")), 5),
                        };
                        format!(
                            "Slurm job {id}: ended ({ended}){}",
                            tail.map(|t| format!("; last lines of its log:\n{t}"))
                                .unwrap_or_default()
                        )
                    }
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
