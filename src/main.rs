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

use clap::{Args, Parser, Subcommand, ValueEnum};
use repro::commands::{plan_text, run_experiments, status_text, CommandError, RunRequest};
use repro::executor::JobCommand;
use repro::interrupt::StopSignal;
use repro::models::{render_table, summarize, Arch, ModelConfig};
use repro::runner::{row_results, write_report, LiveReport, RunOptions};
use repro::spec::{
    load_experiment, ExecutorKind, ExecutorSpec, Experiment, LoadOptions, SlurmSpec, TableSpec,
};

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
    Lockstep(repro::check::command::LockstepArgs),
    /// Draw repro's runs and a reference trainer's runs of one recipe together; verdict on the seed spread.
    Curves(repro::check::curves::CurvesArgs),
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
    /// Train only these runs (comma-separated names of the file's runs); the tables and the
    /// report are still made from whatever is stored.
    #[arg(long, value_delimiter = ',', value_name = "RUN,...")]
    runs: Option<Vec<String>>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Retrain runs even when finished (their files are deleted).
    #[arg(long)]
    force: bool,
    /// Start these runs over (comma-separated names): what they stored is moved to
    /// `<results>/set-aside/`, not deleted. For a run whose checkpoints are all damaged.
    #[arg(long, value_delimiter = ',', value_name = "RUN,...")]
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
    /// inline: this process, one run after another (default); local: several `repro`
    /// processes at once on this machine; slurm: one Slurm job per run.
    #[arg(long, value_enum, help_heading = "Executor")]
    executor: Option<ExecutorKind>,
    /// local: how many runs train at once (default: one per device of --devices; 2 on the CPU).
    #[arg(long, help_heading = "Executor")]
    jobs: Option<usize>,
    /// local: the jobs' devices, one each (cuda:0,cuda:1); default: --device for every job.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "DEVICE,...",
        help_heading = "Executor"
    )]
    devices: Option<Vec<String>>,
    /// slurm: submit the jobs and return; `repro status` shows them and a later `repro run`
    /// picks up what finished.
    #[arg(long, help_heading = "Executor")]
    no_wait: bool,
    /// slurm: the partition of the jobs.
    #[arg(long, help_heading = "Executor")]
    partition: Option<String>,
    /// slurm: the account charged.
    #[arg(long, help_heading = "Executor")]
    account: Option<String>,
    /// slurm: the quality of service.
    #[arg(long, help_heading = "Executor")]
    qos: Option<String>,
    /// slurm: time limit per job (2-00:00:00); the run checkpoints ahead of it and the job
    /// requeues itself.
    #[arg(long, help_heading = "Executor")]
    time: Option<String>,
    /// slurm: GPUs per node (--gres=gpu:N); the runs then train on cuda.
    #[arg(long, help_heading = "Executor")]
    gpus_per_node: Option<u32>,
    /// slurm: CPUs per task.
    #[arg(long, help_heading = "Executor")]
    cpus_per_task: Option<u32>,
    /// slurm: memory per node (64G).
    #[arg(long, help_heading = "Executor")]
    mem: Option<String>,
    /// slurm: nodes per job (data-parallel replicas started with srun).
    #[arg(long, help_heading = "Executor")]
    nodes: Option<u32>,
    /// slurm: ranks per node (data-parallel replicas started with srun).
    #[arg(long, help_heading = "Executor")]
    tasks_per_node: Option<u32>,
    /// slurm: submit the missing runs as one job array, at most N running at once.
    #[arg(long, value_name = "N", help_heading = "Executor")]
    array_parallelism: Option<u32>,
    /// slurm: a further #SBATCH option, as given (--constraint=a100); repeatable.
    #[arg(long = "sbatch", value_name = "OPTION", help_heading = "Executor")]
    sbatch: Vec<String>,
}

impl ExecutorArgs {
    /// The flags as an `executor:` section, to merge over the file's.
    fn spec(&self) -> ExecutorSpec {
        ExecutorSpec {
            kind: self.executor,
            jobs: self.jobs,
            devices: self.devices.clone(),
            slurm: SlurmSpec {
                partition: self.partition.clone(),
                account: self.account.clone(),
                qos: self.qos.clone(),
                time: self.time.clone(),
                gpus_per_node: self.gpus_per_node,
                cpus_per_task: self.cpus_per_task,
                mem: self.mem.clone(),
                nodes: self.nodes,
                tasks_per_node: self.tasks_per_node,
                sbatch: (!self.sbatch.is_empty()).then(|| self.sbatch.clone()),
                array_parallelism: self.array_parallelism,
                ..Default::default()
            },
        }
    }
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

#[derive(Args)]
struct EvalArgs {
    /// inception_v3, inception_v4, inception_resnet_v1 or inception_resnet_v2.
    #[arg(long)]
    model: String,
    /// Weight files (safetensors with timm's names: a run's final.safetensors or a timm state
    /// dict). Several make an ensemble: probabilities are averaged over crops, then models.
    #[arg(long = "weights", required = true)]
    weights: Vec<PathBuf>,
    /// Validation images: `<class>/<image>` folders, or the flat ILSVRC-2012 folder with --val-labels.
    #[arg(long)]
    data: PathBuf,
    /// The devkit's ILSVRC2012_validation_ground_truth.txt, for the flat layout.
    #[arg(long)]
    val_labels: Option<PathBuf>,
    /// 1, 10, 12 or 144.
    #[arg(long, default_value_t = 1)]
    crops: u32,
    /// Central crop fraction of each side (default: the model's, 0.875 or 0.8975 for IR-v2).
    #[arg(long)]
    crop_pct: Option<f64>,
    #[arg(long, value_enum, default_value_t = EvalSetArg::All)]
    eval_set: EvalSetArg,
    /// The devkit's blacklist, for --eval-set nonblacklisted.
    #[arg(long)]
    blacklist: Option<PathBuf>,
    /// Write one row per image (path, label, top-5 classes and probabilities) to this Parquet file.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Input size in pixels.
    #[arg(long, default_value_t = 299)]
    size: usize,
    /// Width multiplier the weights were trained with.
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// Classes of the classifier (default: read from the weights).
    #[arg(long)]
    classes: Option<usize>,
    /// Blocks per stage the weights were trained with (default: the paper's), e.g. 1,1,1.
    #[arg(long, value_delimiter = ',')]
    blocks: Option<Vec<usize>>,
    /// Average-pool padding: exclude (TF, default) or include (to match timm's inception_v3 exactly).
    #[arg(long, value_enum, default_value_t = PadArg::Exclude)]
    avg_pool_padding: PadArg,
    /// Crops per forward pass.
    #[arg(long, default_value_t = 144)]
    batch: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Decoding threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Leave out images that cannot be read or decoded instead of stopping at the first:
    /// they are counted, listed in the output and in --predictions, and not scored.
    #[arg(long)]
    skip_bad_images: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum EvalSetArg {
    All,
    Nonblacklisted,
}

#[derive(Clone, Copy, ValueEnum)]
enum PadArg {
    Exclude,
    Include,
}

#[derive(Args)]
struct ModelsArgs {
    /// Input height and width in pixels (at least 75; 75, 107, ..., 299 tile exactly).
    #[arg(long, default_value_t = 299)]
    size: usize,
    /// Width multiplier applied to every filter count.
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// Number of classes of the classifier.
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// Include the auxiliary head.
    #[arg(long)]
    aux: bool,
    /// Only this network (inception_v3, inception_v4, inception_resnet_v1, inception_resnet_v2).
    #[arg(long)]
    model: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
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
    repro::models::fastops::configure_thread_pools();
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
        Command::Lockstep(args) => match repro::check::command::models(&args)
            .map_err(bad_input)
            .and_then(|_| repro::check::command::run(&args).map_err(failed))
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(failed(
                "repro and timm differ beyond the tolerance (see the table above)",
            )),
            Err(f) => Err(f),
        },
        Command::Curves(args) => {
            use repro::check::curves::{CurvesError, CurvesVerdict};
            match repro::check::curves::run(&args) {
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
    let world_size = repro::dist::LaunchInfo::detect(|name| std::env::var(name).ok())
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
    let (replicas, launch) = repro::dist::from_environment().map_err(bad_input)?;
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
        only: args.runs.clone(),
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
        restart: args.restart.clone(),
        executor: args.executor.spec(),
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
        let tables = |t: &TableSpec, row: usize| row_results(&e, &args.experiment.results, t, row);
        let index = write_report(
            &e,
            &args.experiment.results,
            &args.reports,
            &command_line(),
            &tables,
        )
        .map_err(failed)?;
        println!("{}", index.display());
    }
    Ok(())
}

fn eval(args: EvalArgs) -> Result<(), Failure> {
    use repro::eval::{
        evaluate, protocol_for, write_predictions, EvalError, EvalRequest, ModelSpec,
    };
    use repro::models::AvgPoolPadding;
    let arch = Arch::from_name(&args.model)
        .ok_or_else(|| bad_input(format!("unknown model `{}`", args.model)))?;
    for w in &args.weights {
        if !w.is_file() {
            return Err(bad_input(format!(
                "--weights: {} does not exist",
                w.display()
            )));
        }
    }
    let classes = match args.classes {
        Some(n) => n,
        None => {
            repro::models::import::classifier_outputs(&args.weights[0], arch).map_err(bad_input)?
        }
    };
    let mut config = ModelConfig::new(arch);
    config.num_classes = classes;
    config.width = args.width;
    config.image_size = args.size;
    config.blocks = match args.blocks.as_deref() {
        None => None,
        Some(&[a, b, c]) => Some([a, b, c]),
        Some(_) => return Err(bad_input("--blocks takes three numbers, e.g. 1,1,1")),
    };
    config.avg_pool_padding = Some(match args.avg_pool_padding {
        PadArg::Exclude => AvgPoolPadding::Exclude,
        PadArg::Include => AvgPoolPadding::Include,
    });
    let labels = args
        .val_labels
        .clone()
        .map(repro::data::ValLabels::GroundTruth);
    let nonblacklisted = matches!(args.eval_set, EvalSetArg::Nonblacklisted);
    let dataset = repro::runner::eval_dataset(
        &args.data,
        nonblacklisted,
        args.blacklist.as_deref(),
        labels,
    )
    .map_err(bad_input)?;
    let crop_pct = args.crop_pct.unwrap_or(arch.eval_defaults().1);
    let protocol = protocol_for(args.crops, crop_pct, args.size as u32).map_err(bad_input)?;
    let (device, _) = repro::device::parse_device(&args.device).map_err(bad_input)?;
    let stop = StopSignal::on_signals();
    let request = EvalRequest {
        models: args
            .weights
            .iter()
            .map(|w| ModelSpec {
                config: config.clone(),
                weights: w.clone(),
            })
            .collect(),
        dataset: &dataset,
        protocol,
        input_size: args.size as u32,
        batch_size: args.batch,
        threads: args.threads,
        device,
        skip_bad_images: args.skip_bad_images,
        show_progress: true,
        stop,
    };
    let report = evaluate(&request).map_err(|e| match e {
        EvalError::Image(e) => bad_input(format!(
            "{e}\n(--skip-bad-images leaves unreadable images out and lists them)"
        )),
        e @ EvalError::Interrupted { .. } => CommandError::interrupted(e),
        e if e.is_bad_input() => bad_input(e),
        e => failed(e),
    })?;
    println!("{report}");
    if let Some(path) = &args.predictions {
        write_predictions(path, &report).map_err(failed)?;
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
    let archs = match &args.model {
        Some(name) => vec![Arch::from_name(name).ok_or_else(|| {
            bad_input(format!(
                "unknown model `{name}`; known: {}",
                Arch::ALL.map(|a| a.name()).join(", ")
            ))
        })?],
        None => Arch::ALL.to_vec(),
    };
    let summaries = archs
        .into_iter()
        .map(|arch| {
            let mut cfg = ModelConfig::new(arch);
            cfg.width = args.width;
            cfg.num_classes = args.classes;
            cfg.aux_head = args.aux;
            cfg.image_size = args.size;
            summarize(&cfg, args.size).map_err(|e| bad_input(format!("{arch}: {e}")))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    match args.format {
        Format::Table => print!("{}", render_table(&summaries)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&summaries).map_err(bad_input)?
        ),
    }
    Ok(())
}
