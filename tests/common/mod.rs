#![allow(dead_code)]
pub mod deterministic;
