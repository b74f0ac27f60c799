//! The `local` executor: up to N runs train at once on this machine, each in its own
//! `repro` process on its own device (`--devices cuda:0,cuda:1`), or on the CPU with the
//! cores shared out. Each job's output goes to `local.log` in its run folder.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::outcome::folder_outcome;
use super::{finished_and_missing, Executor, JobCommand};
use crate::experiment::{ExecutorSpec, Experiment};
use crate::interrupt::StopSignal;
use crate::runner::{progress_of, PlannedRun, RunFailure, RunOptions, RunProgress, RunResult};
use crate::store::RunDir;
use crate::train::RunOutcome;

/// The name of each local job's log inside its run folder.
pub const LOCAL_LOG: &str = "local.log";

pub struct LocalExecutor {
    /// One device per job slot.
    slots: Vec<String>,
    /// Decode and compute threads per job (`None`: the job's default).
    threads: Option<usize>,
    command: JobCommand,
    results: PathBuf,
    only: Option<Vec<String>>,
    stop: StopSignal,
}

impl LocalExecutor {
    pub fn new(
        spec: &ExecutorSpec,
        options: &RunOptions,
        command: JobCommand,
    ) -> Result<Self, String> {
        let devices = spec
            .devices
            .clone()
            .unwrap_or_else(|| vec![options.device_name.clone()]);
        if devices.is_empty() {
            return Err("executor.devices is empty: name at least one device".into());
        }
        for d in &devices {
            crate::device::parse_device(d).map_err(|e| format!("executor.devices: {e}"))?;
        }
        let all_cpu = devices.iter().all(|d| d == "cpu");
        let jobs = spec.jobs.unwrap_or(match all_cpu {
            true => 2,
            false => devices.len(),
        });
        if jobs == 0 {
            return Err("--jobs must be at least 1".into());
        }
        if !all_cpu && jobs > devices.len() {
            return Err(format!(
                "{jobs} jobs at once need {jobs} devices, one each; --devices names {} ({})",
                devices.len(),
                devices.join(", ")
            ));
        }
        let slots: Vec<String> = (0..jobs)
            .map(|i| devices[i % devices.len()].clone())
            .collect();
        let threads = match (options.threads, all_cpu) {
            (0, true) => Some((num_cpus() / jobs).max(1)),
            (0, false) => None,
            (t, _) => Some(t),
        };
        Ok(Self {
            slots,
            threads,
            command,
            results: options.results.clone(),
            only: options.only.clone(),
            stop: options.stop,
        })
    }

    fn spawn(
        &self,
        experiment: &Experiment,
        planned: &PlannedRun,
        device: &str,
    ) -> Result<Child, String> {
        let dir = RunDir::new(&planned.dir);
        dir.create()
            .map_err(|e| format!("cannot create {}: {e}", planned.dir.display()))?;
        let log_path = planned.dir.join(LOCAL_LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let err_log = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let argv = self
            .command
            .argv(&experiment.path, &planned.run.name, device, self.threads);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(&self.command.cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        // CPU jobs split the cores: each computes with its share unless the user chose.
        if let (Some(t), "cpu", None) =
            (self.threads, device, std::env::var_os("RAYON_NUM_THREADS"))
        {
            cmd.env("RAYON_NUM_THREADS", t.to_string());
        }
        // Its own process group: Ctrl-C in the terminal reaches this process only, which
        // then asks each job once to checkpoint and stop (a second signal would kill it).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn()
            .map_err(|e| format!("cannot start {}: {e}", argv[0]))
    }
}

struct Running {
    planned: PlannedRun,
    slot: usize,
    child: Child,
}

impl Executor for LocalExecutor {
    fn train(&self, experiment: &Experiment) -> Vec<(PlannedRun, RunResult)> {
        let (mut out, missing) =
            finished_and_missing(experiment, &self.results, self.only.as_deref());
        let mut waiting: VecDeque<PlannedRun> = missing.into();
        let mut free: Vec<usize> = (0..self.slots.len()).rev().collect();
        let mut running: Vec<Running> = Vec::new();
        let mut stop_sent = false;
        loop {
            while !self.stop.requested() && !waiting.is_empty() && !free.is_empty() {
                let planned = waiting.pop_front().expect("not empty");
                let slot = free.pop().expect("not empty");
                let device = &self.slots[slot];
                match self.spawn(experiment, &planned, device) {
                    Ok(child) => {
                        tracing::info!(
                            "{}: started on {device} (pid {}, log {})",
                            planned.run.name,
                            child.id(),
                            planned.dir.join(LOCAL_LOG).display()
                        );
                        running.push(Running {
                            planned,
                            slot,
                            child,
                        });
                    }
                    Err(message) => {
                        free.push(slot);
                        out.push((planned, RunResult::Failed(RunFailure::new(message))));
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            if self.stop.requested() && !stop_sent {
                for r in &running {
                    terminate(&r.child);
                }
                stop_sent = true;
            }
            std::thread::sleep(Duration::from_millis(200));
            let mut i = 0;
            while i < running.len() {
                match running[i].child.try_wait() {
                    Ok(Some(status)) => {
                        let r = running.swap_remove(i);
                        free.push(r.slot);
                        let result = job_result(&r, status.code(), &self.slots[r.slot]);
                        out.push((r.planned, result));
                    }
                    Ok(None) => i += 1,
                    Err(e) => {
                        let r = running.swap_remove(i);
                        free.push(r.slot);
                        let message = format!("cannot wait for the job: {e}");
                        out.push((r.planned, RunResult::Failed(RunFailure::new(message))));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.run.name.cmp(&b.0.run.name));
        out
    }
}

fn job_result(r: &Running, code: Option<i32>, device: &str) -> RunResult {
    let by = format!("a local job on {device}");
    let log = r.planned.dir.join(LOCAL_LOG);
    let progress = progress_of(&r.planned.dir);
    match (code, progress) {
        (Some(3), RunProgress::Partial { step }) => {
            RunResult::Trained(RunOutcome::Interrupted { step })
        }
        (Some(3), progress) => RunResult::Delegated { progress, by },
        (Some(code), progress) => folder_outcome(
            &r.planned,
            progress,
            &by,
            &format!("exit code {code}"),
            &log,
            code == 2,
        ),
        (None, progress) => {
            folder_outcome(&r.planned, progress, &by, "killed by a signal", &log, false)
        }
    }
}

/// Asks a job to checkpoint and stop, as Ctrl-C would.
fn terminate(child: &Child) {
    #[cfg(unix)]
    // SAFETY: sending a signal to a child process this process started and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    #[cfg(not(unix))]
    let _ = child;
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
