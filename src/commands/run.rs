//! `repro run`: for each experiment, train what is missing through its executor, evaluate the
//! tables and write the report; say what happened to each run as it happens.

use std::path::PathBuf;

use super::outcome::{CommandError, ExitClass};
use super::report::render_report;
use crate::executor::{build, JobCommand};
use crate::experiment::selection::select_runs;
use crate::experiment::{ExecutorSpec, Experiment};
use crate::runner::{
    check_report_folder, evaluate_tables, plan, preflight, restart_runs, run_line, smoke_notice,
    RunFailure, RunOptions, RunResult,
};

/// Everything `repro run` was asked to do.
pub struct RunRequest<'a> {
    pub experiments: &'a [Experiment],
    pub options: RunOptions,
    /// Runs to start over (`--restart`): what they stored is moved aside first.
    pub restart: Vec<String>,
    /// The executor flags of the command line, merged over each file's `executor:`.
    pub executor: ExecutorSpec,
    /// Wait for the runs handed to a scheduler (`--no-wait` clears it).
    pub wait: bool,
    /// How the local and Slurm executors start their jobs.
    pub job_command: JobCommand,
    /// Where reports are written.
    pub reports: PathBuf,
    /// Train only: no table evaluations and no report.
    pub no_report: bool,
    /// The command as typed, for messages and the report.
    pub command_line: String,
}

/// How a `repro run` that got to run ended.
#[derive(Debug)]
pub enum RunEnd {
    /// Every selected run and evaluation is done (or handed to a scheduler).
    Finished,
    /// These runs or evaluations failed or diverged; the rest were carried out.
    Failed(Vec<RunFailure>),
    /// Stopped by Ctrl-C, SIGTERM or SIGUSR1; what it says is how to go on.
    Interrupted(String),
}

impl RunEnd {
    /// The exit status class of this end; `None` for success.
    pub fn exit_class(&self) -> Option<ExitClass> {
        match self {
            RunEnd::Finished => None,
            RunEnd::Failed(failures) => Some(match failures.iter().any(|f| f.bad_input) {
                true => ExitClass::BadInput,
                false => ExitClass::Failed,
            }),
            RunEnd::Interrupted(_) => Some(ExitClass::Interrupted),
        }
    }

    /// What to tell the user when it did not simply finish.
    pub fn message(&self) -> Option<String> {
        match self {
            RunEnd::Finished => None,
            RunEnd::Failed(failures) => Some(format!(
                "{} run(s) or evaluation(s) failed or diverged:\n  {}",
                failures.len(),
                failures
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )),
            RunEnd::Interrupted(message) => Some(message.clone()),
        }
    }
}

/// Carries out `request`, saying each line of progress through `say`. Errors before any run
/// starts (unknown run names, a preflight check, an executor that cannot be built) are
/// returned; everything after is in the [`RunEnd`].
pub fn run_experiments(
    request: &RunRequest,
    say: &mut dyn FnMut(String),
) -> Result<RunEnd, CommandError> {
    let (only, restart) = selected_runs(request)?;
    let options = &RunOptions {
        only,
        ..request.options.clone()
    };
    let writer = options.replicas.rank() == 0;
    if writer && !restart.is_empty() {
        for e in request.experiments {
            let moved =
                restart_runs(e, &options.results, &restart).map_err(CommandError::failed)?;
            for (run, to) in moved {
                say(format!(
                    "{run}: starts over; what it stored is now in {}",
                    to.display()
                ));
            }
        }
    }
    // `--no-report` still renders the report while runs train, unless `--report-every off`.
    let renders_report = !request.no_report || options.live_report.is_some();
    for e in request.experiments {
        preflight(e, &options.results, options.force, &options.device)
            .map_err(CommandError::bad_input)?;
        if writer && renders_report && !e.defines_runs_only() {
            check_report_folder(e, &request.reports).map_err(CommandError::bad_input)?;
        }
    }
    let executors = request
        .experiments
        .iter()
        .map(|e| {
            let spec = request.executor.merged_over(&e.executor);
            build(&spec, options, &request.job_command, request.wait)
                .map_err(|m| CommandError::bad_input(format!("{}: {m}", e.path.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut failures: Vec<RunFailure> = Vec::new();
    for (e, executor) in request.experiments.iter().zip(&executors) {
        if e.defines_runs_only() {
            say(format!(
                "{}: defines runs for other files to include; nothing to run",
                e.path.display()
            ));
            continue;
        }
        if writer {
            say(e.heading());
        }
        let results = executor.train(e);
        let queued = results
            .iter()
            .any(|(_, r)| matches!(r, RunResult::Queued { .. }));
        let stopped = options.stop.requested() || results.iter().any(|(_, r)| r.is_interrupted());
        if !writer {
            // Replica 0 reports, evaluates the tables and renders the report.
            match stopped {
                true => return Ok(interrupted(&results, &request.command_line)),
                false => continue,
            }
        }
        let name_width = results
            .iter()
            .map(|(p, _)| p.run.name.len())
            .max()
            .unwrap_or(0);
        for (planned, result) in &results {
            say(format!(
                "  {:<name_width$}  {}",
                planned.run.name,
                run_line(planned, result)
            ));
            if let Some(failure) = result.failure(&e.name, &planned.run.name) {
                failures.push(failure);
            }
        }
        if stopped && queued {
            return Ok(RunEnd::Interrupted(format!(
                "stopped waiting; the Slurm jobs go on: `repro status {}` shows them and `{}` \
                 waits for them again",
                e.path.display(),
                request.command_line
            )));
        }
        if stopped {
            return Ok(interrupted(&results, &request.command_line));
        }
        if queued {
            say(format!(
                "  tables and report: made by their own job once the runs' jobs succeed, or by \
                 `repro run {}` once the runs are done",
                e.path.display()
            ));
            continue;
        }
        if request.no_report {
            continue;
        }
        let (evaluated, problems) = evaluate_tables(
            e,
            &options.results,
            &options.device,
            options.threads,
            options.stop,
        );
        if options.stop.requested() {
            return Ok(RunEnd::Interrupted(
                "interrupted during the table evaluations; the evaluations already stored are \
                 kept and the same command runs the rest"
                    .into(),
            ));
        }
        if evaluated > 0 {
            say(format!("  table evaluations run: {evaluated}"));
        }
        failures.extend(problems.into_iter().map(|p| RunFailure {
            message: format!("{}: {}", e.name, p.message),
            bad_input: p.bad_input,
        }));
        if let Some(notice) = smoke_notice(e) {
            say(format!("  note: {notice}"));
        }
        let index = render_report(e, &options.results, &request.reports, &request.command_line)?;
        say(format!("  report: {}", index.display()));
    }
    Ok(match failures.is_empty() {
        true => RunEnd::Finished,
        false => RunEnd::Failed(failures),
    })
}

/// The runs `--runs` and `--restart` name, as the files name them: each name given selects that
/// run and the runs under it (a sweep, a sweep cell's seeds); a name that selects nothing is bad
/// input.
fn selected_runs(request: &RunRequest) -> Result<(Option<Vec<String>>, Vec<String>), CommandError> {
    let known: Vec<String> = request
        .experiments
        .iter()
        .flat_map(|e| {
            plan(e, &request.options.results)
                .into_iter()
                .map(|p| p.run.name)
        })
        .collect();
    let select = |flag: &str, names: &[String]| {
        select_runs(names, &known).map_err(|m| CommandError::bad_input(format!("{flag}: {m}")))
    };
    let only = match &request.options.only {
        Some(names) => Some(select("--runs", names)?),
        None => None,
    };
    let restart = match request.restart.is_empty() {
        true => Vec::new(),
        false => select("--restart", &request.restart)?,
    };
    Ok((only, restart))
}

/// The end of a run stopped by Ctrl-C, SIGTERM or SIGUSR1.
fn interrupted(results: &[(crate::runner::PlannedRun, RunResult)], command_line: &str) -> RunEnd {
    let which = results
        .iter()
        .find(|(_, r)| r.is_interrupted())
        .map(|(p, _)| format!(" in run `{}`", p.run.name))
        .unwrap_or_default();
    RunEnd::Interrupted(format!(
        "interrupted{which}; its checkpoint is saved and `{command_line}` resumes it"
    ))
}
