#![allow(dead_code)]
pub mod deterministic;
pub mod tempdir;

pub use tempdir::TempDir;
