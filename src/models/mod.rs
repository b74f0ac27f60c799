//! The four networks of the paper, built from one shared vocabulary of blocks.
//!
//! | name | built as |
//! |---|---|
//! | `inception_v3` | TF-slim / timm Inception-v3 (the paper's baseline) |
//! | `inception_v4` | paper Figs 3-9 = TF-slim / timm |
//! | `inception_resnet_v1` | paper Figs 14, 10-13, 15 (no public weights) |
//! | `inception_resnet_v2` | TF-slim / timm release (differs from the paper's drawings, see its file) |
//!
//! Variables carry timm's state-dict names, so weights move between repro and timm unchanged
//! ([`import`]).

mod blocks;
mod body;
mod config;
pub mod cuda_conv;
mod dropout;
pub mod fastops;
mod handover;
pub mod import;
mod inception_resnet_v1;
mod inception_resnet_v2;
mod inception_v3;
mod inception_v4;
pub mod init;
pub mod layers;
mod network;
pub mod pool;
mod table;

pub use body::STAGE_NAMES;
pub use config::{Arch, AvgPoolPadding, InitScheme, ModelConfig, MIN_IMAGE_SIZE};
pub use network::{summarize, Network, NetworkOutput, StageSummary, Summary};
pub use table::{group_digits, render_table};

#[cfg(test)]
mod tests;
