//! The `repro` command line: parses arguments, calls the library, maps errors to exit codes.
//!
//! Exit codes, the same for every command: 0 success; 1 a run, evaluation or check failed
//! or diverged (including a run folder held by another process); 2 bad input (command line,
//! experiment file, missing paths, unreadable or undecodable data, weights that do not fit
//! the network); 3 interrupted by Ctrl-C, SIGTERM or SIGUSR1 (a training run checkpointed first, and
//! the same command resumes it). When several happen, 3 wins over 2 over 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use repro::commands::{
    evaluate_weights, models_text, plan_text, render_report, run_experiments, status_text,
    CommandError, EvalArgs, ModelsArgs, RunRequest,
};
use repro::executor::JobCommand;
use repro::experiment::{load_experiment, ExecutorSpec, Experiment, LoadOptions};
use repro::interrupt::StopSignal;
use repro::runner::{LiveReport, RunOptions};

/// The C allocator, with its heap on transparent huge pages where the kernel gives them on
/// request (set up with the rest of the CPU's configuration at the start of `main`).
#[global_allocator]
static HEAP: repro::models::fastops::HugePageHeap = repro::models::fastops::HugePageHeap;

#[derive(Parser)]
#[command(
    name = "repro",
    version,
    about = "Reproduce Inception-v4 / Inception-ResNet (Szegedy et al., 2016): train, evaluate, report",
    long_about = "Reproduces the experiments of \"Inception-v4, Inception-ResNet and the Impact of Residual \
Connections on Learning\" (Szegedy et al., 2016).\n\nStart with:\n  repro run experiments/fig23.yaml --smoke   \
# the whole pipeline on generated data, in seconds\n  repro plan experiments/table5.yaml          # what a real run would train\n  \
repro models                                # the four networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train what is missing, evaluate and write the report of one or more experiment files.
    Run(Box<RunArgs>),
    /// Show what `run` would do: each run, whether it is cached, and the work left. Runs nothing.
    Plan(ExperimentArgs),
    /// Show where each run stands (running, stopped at a step, done, failed), its step rate, the
    /// time it needs to finish and its last evaluation.
    Status(StatusArgs),
    /// Re-render the figures, tables and HTML report of experiment files from stored results.
    Report(ReportArgs),
    /// Evaluate one model or an ensemble of weight files (ours or timm's) with 1, 10, 12 or 144 crops.
    Eval(EvalArgs),
    /// Measure training images/s, evaluation crops/s, or CPU/GPU parity (one JSON line per network).
    Bench(repro::bench::BenchArgs),
    /// List the four networks with their parameters, MACs and feature-map sizes per stage.
    Models(ModelsArgs),
    /// Train repro and PyTorch + timm from the same weights on the same batches; compare step by step.
    Lockstep(repro::crosscheck::command::LockstepArgs),
    /// Draw repro's runs and a reference trainer's runs of one recipe together; verdict on the seed spread.
    Curves(repro::crosscheck::curves::CurvesArgs),
}

#[derive(Args)]
struct ExperimentArgs {
    /// Experiment files (experiments/*.yaml).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Use the file's `smoke` profile: generated data, tiny networks, 1–2 epochs.
    #[arg(long)]
    smoke: bool,
    /// Use another profile of the file.
    #[arg(long, conflicts_with = "smoke")]
    profile: Option<String>,
    /// Override a setting: `train.epochs=10` (every run), `runs.inception_v4.train.batch_size=64`.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<String>,
    /// Where runs are stored.
    #[arg(long, default_value = "results")]
    results: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Train only these runs (comma-separated names of the file's runs; a sweep's name or one
    /// of its cells selects the runs under it); the tables and the report are still made from
    /// whatever is stored.
    #[arg(long, value_name = "RUN,...")]
    runs: Option<Vec<String>>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Retrain runs even when finished (their files are deleted).
    #[arg(long)]
    force: bool,
    /// Start these runs over (comma-separated names): what they stored is moved to
    /// `<results>/set-aside/`, not deleted. For a run whose checkpoints are all damaged.
    #[arg(long, value_name = "RUN,...")]
    restart: Vec<String>,
    /// Image decoding threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seconds to wait for a run folder another repro process holds (default: fail at once).
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
    /// Where reports are written (`<reports>/<experiment>/index.html`).
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
    /// Train only: no table evaluations and no report (what each job of an executor runs).
    /// The report is still rendered while runs train (see --report-every).
    #[arg(long)]
    no_report: bool,
    /// While runs train, render the report again after an evaluation at most once every
    /// SECONDS (and at most 5 % of the time); 0: after every evaluation; `off`: only at the end.
    #[arg(long, value_name = "SECONDS|off", default_value = "10", value_parser = parse_report_every)]
    report_every: ReportEvery,
    #[command(flatten)]
    executor: ExecutorArgs,
}

/// Who trains the missing runs; each flag wins over the file's `executor:` section.
#[derive(Args)]
struct ExecutorArgs {
    #[command(flatten)]
    spec: ExecutorSpec,
    /// slurm: submit the jobs and return; `repro status` shows them and a later `repro run`
    /// picks up what finished.
    #[arg(long, help_heading = "Executor (slurm)")]
    no_wait: bool,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Print the status again every N seconds until interrupted (Ctrl-C).
    #[arg(long, value_name = "N")]
    watch: Option<u64>,
}

/// `--report-every`: seconds, or `None` for `off`.
#[derive(Clone, Copy)]
struct ReportEvery(Option<u64>);

fn parse_report_every(text: &str) -> Result<ReportEvery, String> {
    match text {
        "off" => Ok(ReportEvery(None)),
        n => n
            .parse()
            .map(|s| ReportEvery(Some(s)))
            .map_err(|_| format!("expected a number of seconds or `off`, found `{n}`")),
    }
}

#[derive(Args)]
struct ReportArgs {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Where reports are written (`<reports>/<experiment>/index.html`).
    #[arg(long, default_value = "reports")]
    reports: PathBuf,
}

type Failure = CommandError;

fn bad_input(message: impl ToString) -> Failure {
    CommandError::bad_input(message)
}

fn failed(message: impl ToString) -> Failure {
    CommandError::failed(message)
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    // `repro plan ... | head`: end quietly when the reader goes away, like other Unix
    // tools, instead of panicking on the failed write (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default action of a signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    repro::models::fastops::configure_cpu();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Plan(args) => show_plan(args),
        Command::Status(args) => show_status(args),
        Command::Report(args) => report(args),
        Command::Eval(args) => eval(args),
        Command::Bench(args) => repro::bench::validate(&args)
            .map_err(bad_input)
            .and_then(|_| repro::bench::run(args).map_err(failed)),
        Command::Models(args) => models(args),
        Command::Lockstep(args) => match repro::crosscheck::command::models(&args)
            .map_err(bad_input)
            .and_then(|_| repro::crosscheck::command::run(&args).map_err(failed))
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(failed(
                "repro and timm differ beyond the tolerance (see the table above)",
            )),
            Err(f) => Err(f),
        },
        Command::Curves(args) => {
            use repro::crosscheck::curves::{CurvesError, CurvesVerdict};
            match repro::crosscheck::curves::run(&args) {
                Ok(CurvesVerdict::OutsideSpread) => Err(failed(
                    "repro does NOT lie within the reference's seed spread (see the table above)",
                )),
                Ok(CurvesVerdict::WithinSpread | CurvesVerdict::NoSpread) => Ok(()),
                Err(e @ CurvesError::Input(_)) => Err(bad_input(e)),
                Err(e @ CurvesError::Write(_)) => Err(failed(e)),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.class.code())
        }
    }
}

/// The profile the flags select (`--smoke` is `--profile smoke`).
fn profile_of(args: &ExperimentArgs) -> Option<String> {
    match args.smoke {
        true => Some("smoke".to_string()),
        false => args.profile.clone(),
    }
}

fn load_all(args: &ExperimentArgs) -> Result<Vec<Experiment>, Failure> {
    let profile = profile_of(args);
    // Under `mpirun -np N` the runs are N replicas unless the file says otherwise.
    let world_size = repro::replicas::LaunchInfo::detect(|name| std::env::var(name).ok())
        .map_err(bad_input)?
        .world_size;
    let options = LoadOptions {
        profile,
        overrides: args.overrides.clone(),
        world_size,
    };
    args.files
        .iter()
        .map(|f| load_experiment(f, &options).map_err(bad_input))
        .collect()
}

fn run(args: RunArgs) -> Result<(), Failure> {
    let experiments = load_all(&args.experiment)?;
    let (replicas, launch) = repro::replicas::from_environment().map_err(bad_input)?;
    let device_arg = match (args.device.as_str(), launch.world_size) {
        // One GPU per process: the node-local rank picks it.
        ("cuda", w) if w > 1 => format!("cuda:{}", launch.local_rank),
        (d, _) => d.to_string(),
    };
    let (device, device_name) = repro::device::parse_device(&device_arg).map_err(bad_input)?;
    let options = RunOptions {
        results: args.experiment.results.clone(),
        device,
        device_name,
        force: args.force,
        threads: args.threads,
        wait_for_lock: args.wait.map(Duration::from_secs),
        show_progress: true,
        stop: StopSignal::on_signals(),
        replicas,
        only: args.runs.as_deref().map(run_names),
        command_flags: command_flags(&args.experiment),
        live_report: args.report_every.0.map(|seconds| LiveReport {
            reports: args.reports.clone(),
            every: Duration::from_secs(seconds),
            command: command_line(),
        }),
    };
    let mut job_command = JobCommand::current(
        profile_of(&args.experiment),
        args.experiment.overrides.clone(),
        &options.results,
        &args.reports,
    )
    .map_err(failed)?;
    job_command.report_every = Some(args.report_every.0.map_or("off".into(), |s| s.to_string()));
    let request = RunRequest {
        experiments: &experiments,
        options,
        restart: run_names(&args.restart),
        executor: args.executor.spec.clone(),
        wait: !args.executor.no_wait,
        job_command,
        reports: args.reports.clone(),
        no_report: args.no_report,
        command_line: command_line(),
    };
    let end = run_experiments(&request, &mut |line| println!("{line}"))?;
    match (end.exit_class(), end.message()) {
        (Some(class), Some(message)) => Err(CommandError { class, message }),
        _ => Ok(()),
    }
}

fn report(args: ReportArgs) -> Result<(), Failure> {
    for e in load_all(&args.experiment)?
        .into_iter()
        .filter(|e| !e.defines_runs_only())
    {
        let index = render_report(&e, &args.experiment.results, &args.reports, &command_line())?;
        println!("{}", index.display());
    }
    Ok(())
}

fn eval(args: EvalArgs) -> Result<(), Failure> {
    let outcome = evaluate_weights(&args, StopSignal::on_signals())?;
    println!("{}", outcome.report);
    if let Some(path) = &outcome.predictions {
        println!("predictions: {}", path.display());
    }
    Ok(())
}

/// The command as typed, for the report's "what was run".
/// The profile, `--set` and `--results` arguments of `args`, as given.
fn command_flags(args: &ExperimentArgs) -> Vec<String> {
    let mut flags = Vec::new();
    if args.smoke {
        flags.push("--smoke".to_string());
    } else if let Some(p) = &args.profile {
        flags.extend(["--profile".to_string(), p.clone()]);
    }
    for o in &args.overrides {
        flags.extend(["--set".to_string(), o.clone()]);
    }
    if args.results != Path::new("results") {
        flags.extend(["--results".to_string(), args.results.display().to_string()]);
    }
    flags
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("repro {}", args.join(" "))
}

fn show_status(args: StatusArgs) -> Result<(), Failure> {
    let experiments: Vec<Experiment> = load_all(&args.experiment)?
        .into_iter()
        .filter(|e| !e.defines_runs_only())
        .collect();
    let results = &args.experiment.results;
    let Some(every) = args.watch else {
        print!("{}", status_text(&experiments, results, SystemTime::now()));
        return Ok(());
    };
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stdout().is_terminal();
    loop {
        let text = status_text(&experiments, results, SystemTime::now());
        let heading = format!(
            "repro status at {} (every {every} s; Ctrl-C ends)",
            repro::store::clock::now_rfc3339()
        );
        // On a terminal the screen is redrawn; in a pipe or a file each report follows the last.
        let clear = if terminal { "\x1b[2J\x1b[H" } else { "\n" };
        print!("{clear}{heading}\n{text}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(every.max(1)));
    }
}

fn show_plan(args: ExperimentArgs) -> Result<(), Failure> {
    for e in load_all(&args)?
        .into_iter()
        .filter(|e| !e.defines_runs_only())
    {
        print!("{}", plan_text(&e, &args.results));
    }
    Ok(())
}

fn models(args: ModelsArgs) -> Result<(), Failure> {
    print!("{}", models_text(&args)?);
    Ok(())
}

/// The run names of repeated, comma-separated `--runs`/`--restart` arguments (sweep cells keep
/// their commas).
fn run_names(args: &[String]) -> Vec<String> {
    args.iter()
        .flat_map(|a| repro::experiment::selection::split_run_list(a))
        .collect()
}
