//! The command line another process runs to train one run of an experiment.

use std::path::{Path, PathBuf};

pub use crate::shell::{shell_line, shell_quote};

/// What `repro run` was started with, for the jobs it starts: each runs
/// `repro run FILE --runs NAME --executor inline --no-report` with the same profile,
/// overrides and results folder, from the same working folder.
#[derive(Clone, Debug)]
pub struct JobCommand {
    /// This program.
    pub exe: PathBuf,
    pub profile: Option<String>,
    /// `--set` arguments, as given.
    pub overrides: Vec<String>,
    /// The results folder, absolute.
    pub results: PathBuf,
    /// The reports folder, absolute (for a job that makes the tables and the report).
    pub reports: PathBuf,
    /// The working folder, where relative paths in the experiment files resolve.
    pub cwd: PathBuf,
    /// `--report-every` as given (seconds or `off`): how often a job renders the report
    /// while its run trains.
    pub report_every: Option<String>,
}

/// How long a job waits for its run folder's lock (the job it replaces may still be
/// releasing it).
const LOCK_WAIT_S: u64 = 120;

impl JobCommand {
    /// The command of this process (`std::env::current_exe`), in the current folder.
    pub fn current(
        profile: Option<String>,
        overrides: Vec<String>,
        results: &Path,
        reports: &Path,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program's path to start jobs: {e}"))?;
        let cwd =
            std::env::current_dir().map_err(|e| format!("cannot read the current folder: {e}"))?;
        Ok(Self {
            exe,
            profile,
            overrides,
            results: absolute(results)?,
            reports: absolute(reports)?,
            cwd,
            report_every: None,
        })
    }

    /// `repro run FILE` with this command's profile, overrides and results folder.
    fn base(&self, file: &Path) -> Vec<String> {
        let mut argv = vec![
            self.exe.display().to_string(),
            "run".into(),
            absolute(file).map_or_else(|_| file.display().to_string(), |p| p.display().to_string()),
        ];
        if let Some(p) = &self.profile {
            argv.extend(["--profile".into(), p.clone()]);
        }
        for o in &self.overrides {
            argv.extend(["--set".into(), o.clone()]);
        }
        argv.extend(["--results".into(), self.results.display().to_string()]);
        argv
    }

    /// `repro run …` making the tables and the report of `file` once its runs are trained.
    pub fn report_argv(&self, file: &Path, device: &str, threads: Option<usize>) -> Vec<String> {
        let mut argv = self.base(file);
        argv.extend([
            "--reports".into(),
            self.reports.display().to_string(),
            "--executor".into(),
            "inline".into(),
            "--device".into(),
            device.into(),
        ]);
        if let Some(t) = threads {
            argv.extend(["--threads".into(), t.to_string()]);
        }
        argv
    }

    /// `repro run …` training only `run` of `file` on `device`, program first.
    pub fn argv(
        &self,
        file: &Path,
        run: &str,
        device: &str,
        threads: Option<usize>,
    ) -> Vec<String> {
        let mut argv = self.base(file);
        argv.extend([
            "--runs".into(),
            run.into(),
            "--executor".into(),
            "inline".into(),
            "--no-report".into(),
            "--wait".into(),
            LOCK_WAIT_S.to_string(),
            "--device".into(),
            device.into(),
            "--reports".into(),
            self.reports.display().to_string(),
        ]);
        if let Some(every) = &self.report_every {
            argv.extend(["--report-every".into(), every.clone()]);
        }
        if let Some(t) = threads {
            argv.extend(["--threads".into(), t.to_string()]);
        }
        argv
    }
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("cannot make {} absolute: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_trains_one_run_inline_without_a_report() {
        let c = JobCommand {
            exe: "/bin/repro".into(),
            profile: Some("smoke".into()),
            overrides: vec!["train.epochs=2".into()],
            results: "/r".into(),
            reports: "/p".into(),
            cwd: "/w".into(),
            report_every: Some("30".into()),
        };
        let argv = c.argv(Path::new("/x/fig23.yaml"), "inception_v4", "cuda", Some(8));
        assert_eq!(
            argv.join(" "),
            "/bin/repro run /x/fig23.yaml --profile smoke --set train.epochs=2 --results /r \
             --runs inception_v4 --executor inline --no-report --wait 120 --device cuda \
             --reports /p --report-every 30 --threads 8"
        );
    }
}
