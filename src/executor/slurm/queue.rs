//! Slurm's commands, behind a small trait: submit a script, list what is queued, and ask
//! how a job that left the queue ended.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A job still in the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedJob {
    /// `PENDING`, `RUNNING`, `COMPLETING`, `REQUEUED`, …
    pub state: String,
    /// Why it waits (`Priority`, `Resources`, `BeginTime`), or `None`.
    pub reason: String,
    /// The nodes it runs on, when running.
    pub nodes: String,
}

pub trait Queue {
    /// Submits a batch script; returns the job id.
    fn submit(&self, script: &Path, extra: &[String]) -> Result<String, String>;
    /// This user's jobs still in the queue (pending, running, completing), by id; one call.
    fn snapshot(&self) -> Result<BTreeMap<String, QueuedJob>, String>;
    /// How a job that left the queue ended (`COMPLETED`, `CANCELLED`, `TIMEOUT`, …), from
    /// the accounting database when the cluster has one, else from the controller's memory.
    fn final_state(&self, id: &str) -> Option<String>;
}

/// The real thing: `sbatch`, `squeue`, `sacct` and `scontrol` on PATH.
pub struct SlurmCommands;

/// States in which a job has left for good.
const ENDED: [&str; 10] = [
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "REVOKED",
];

impl SlurmCommands {
    /// Fails with a message for users when `sbatch` cannot be run.
    pub fn check_available() -> Result<(), String> {
        match Command::new("sbatch").arg("--version").output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "the slurm executor needs Slurm: `sbatch --version` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!(
                "the slurm executor needs Slurm's sbatch on PATH; it cannot be run: {e}"
            )),
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

impl Queue for SlurmCommands {
    fn submit(&self, script: &Path, extra: &[String]) -> Result<String, String> {
        let script = script.display().to_string();
        let mut args: Vec<&str> = vec!["--parsable"];
        args.extend(extra.iter().map(String::as_str));
        args.push(&script);
        let out = run("sbatch", &args)?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        match !id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            true => Ok(id),
            false => Err(format!("sbatch printed no job id: {}", out.trim())),
        }
    }

    fn snapshot(&self) -> Result<BTreeMap<String, QueuedJob>, String> {
        let uid = current_uid();
        let out = run("squeue", &["-h", "-r", "-u", &uid, "-o", "%i|%T|%r|%N"])?;
        Ok(parse_squeue(&out))
    }

    fn final_state(&self, id: &str) -> Option<String> {
        if let Ok(out) = run(
            "sacct",
            &["-n", "-X", "-P", "-j", id, "-o", "State,ExitCode"],
        ) {
            if let Some(line) = out.lines().find(|l| !l.trim().is_empty()) {
                let mut parts = line.split('|');
                let state = parts.next().unwrap_or_default();
                let state = state.split_whitespace().next().unwrap_or_default();
                let code = parts.next().unwrap_or_default();
                return Some(format!("{state}, exit code {code}"));
            }
        }
        let out = run("scontrol", &["show", "job", id, "-o"]).ok()?;
        let field = |name: &str| {
            out.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        let state = field("JobState=")?;
        Some(match field("ExitCode=") {
            Some(code) => format!("{state}, exit code {code}"),
            None => state,
        })
    }
}

/// `squeue -o %i|%T|%r|%N` lines, ended jobs left out.
fn parse_squeue(out: &str) -> BTreeMap<String, QueuedJob> {
    out.lines()
        .filter_map(|line| {
            let mut p = line.trim().split('|');
            let id = p.next()?.trim().to_string();
            let state = p.next()?.trim().to_string();
            if id.is_empty() || ENDED.contains(&state.as_str()) {
                return None;
            }
            Some((
                id,
                QueuedJob {
                    state,
                    reason: p.next().unwrap_or_default().trim().to_string(),
                    nodes: p.next().unwrap_or_default().trim().to_string(),
                },
            ))
        })
        .collect()
}

fn current_uid() -> String {
    #[cfg(unix)]
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    #[cfg(not(unix))]
    let uid = 0;
    uid.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_are_read_and_ended_jobs_dropped() {
        let jobs =
            parse_squeue("12|RUNNING|None|node1\n13|PENDING|Priority|\n14|COMPLETED|None|node1\n");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs["12"].state, "RUNNING");
        assert_eq!(jobs["12"].nodes, "node1");
        assert_eq!(jobs["13"].reason, "Priority");
    }
}
