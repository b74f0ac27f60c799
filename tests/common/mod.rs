#![allow(dead_code)]
pub mod deterministic;
pub mod runs;
pub mod tempdir;

#[allow(unused_imports)]
pub use tempdir::TempDir;
