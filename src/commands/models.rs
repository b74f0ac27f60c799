//! `repro models`: the four networks with their parameters, MACs and feature-map sizes.

use clap::{Args, ValueEnum};

use super::outcome::CommandError;
use crate::models::{render_table, summarize, Arch, ModelConfig};

#[derive(Args)]
pub struct ModelsArgs {
    /// Input height and width in pixels (at least 75; 75, 107, ..., 299 tile exactly).
    #[arg(long, default_value_t = 299)]
    pub size: usize,
    /// Width multiplier applied to every filter count.
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Number of classes of the classifier.
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// Include the auxiliary head.
    #[arg(long)]
    pub aux: bool,
    /// Only this network (inception_v3, inception_v4, inception_resnet_v1, inception_resnet_v2).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// The four networks (or one) as a table or JSON: parameters, MACs, feature maps per stage.
pub fn models_text(args: &ModelsArgs) -> Result<String, CommandError> {
    let archs = match &args.model {
        Some(name) => vec![Arch::from_name(name).ok_or_else(|| {
            CommandError::bad_input(format!(
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
            summarize(&cfg, args.size).map_err(|e| CommandError::bad_input(format!("{arch}: {e}")))
        })
        .collect::<Result<Vec<_>, CommandError>>()?;
    match args.format {
        Format::Table => Ok(render_table(&summaries)),
        Format::Json => serde_json::to_string_pretty(&summaries)
            .map(|json| format!("{json}\n"))
            .map_err(CommandError::failed),
    }
}
