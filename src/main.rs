//! The `repro` command line: parses arguments, calls the library, maps errors to exit codes
//! (0 success, 1 a run failed, 2 bad input).

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use repro::models::{render_table, summarize, Arch, ModelConfig};

#[derive(Parser)]
#[command(name = "repro", version, about = "Reproduce Inception-v4 / Inception-ResNet (Szegedy et al., 2016): train, evaluate, report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the four networks with their parameters, MACs and feature-map sizes per stage.
    Models(ModelsArgs),
}

#[derive(clap::Args)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Models(args) => models(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn models(args: ModelsArgs) -> anyhow::Result<()> {
    let archs = match &args.model {
        Some(name) => vec![Arch::from_name(name).ok_or_else(|| anyhow::anyhow!("unknown model `{name}`; known: {}", known()))?],
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
            summarize(&cfg, args.size).map_err(|e| anyhow::anyhow!("{arch}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match args.format {
        Format::Table => print!("{}", render_table(&summaries)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&summaries)?),
    }
    Ok(())
}

fn known() -> String {
    Arch::ALL.map(|a| a.name()).join(", ")
}
