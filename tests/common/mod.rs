#![allow(dead_code)]
pub mod cli;
pub mod deterministic;
pub mod runs;
pub mod tempdir;
pub mod tiny;

#[allow(unused_imports)]
pub use cli::{output_text, repo, run_dirs};
#[allow(unused_imports)]
pub use tempdir::TempDir;
