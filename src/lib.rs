//! repro: reproduces the experiments of *Inception-v4, Inception-ResNet and the Impact of
//! Residual Connections on Learning* (Szegedy, Ioffe, Vanhoucke, Alemi, 2016; arXiv 1602.07261).
//!
//! Modules, each with one job (see the README's layout):
//! - [`models`]: the four networks, their building blocks, parameter/MAC counting, timm import.
//! - [`data`]: image sources, the paper's preprocessing, crop geometry and the parallel loader.
//! - [`train`]: optimizers (RMSProp with TF semantics, SGD-momentum), schedules, EMA, the loop.
//! - [`eval`]: 1/10/12/144-crop and ensemble evaluation.
//! - [`store`]: results layout, Parquet, provenance, checkpoints, atomic writes, locks.
//! - [`experiment`]: experiment files: schema, includes, profiles, overrides, run hashing.
//! - [`runner`]: plans, datasets of a run, training what is missing, table evaluations, reports.
//! - [`report`]: figures, tables and the HTML report.
//! - [`crosscheck`]: training compared with PyTorch + timm (`repro lockstep`, `repro curves`).
//! - [`device`], [`bench`]: `--device`/precision, and the `repro bench` measurements.
//! - [`interrupt`]: Ctrl-C/SIGTERM as a request to checkpoint and stop.
//! - [`replicas`]: replicas of a run across processes (MPI, NCCL), behind the `Collective` trait.
//! - [`executor`]: who trains the missing runs (this process, local jobs, Slurm).
//! - [`commands`]: what each `repro` command does, as library functions, and their exit classes.
//! - [`hashing`]: FNV-1a, SplitMix64 and canonical JSON; [`numeric`]: tensors compared in f64.
//! - [`shell`]: command lines quoted for a POSIX shell.
//! - [`watch`]: runs watched while they train: the observer the trainer calls, TensorBoard
//!   event files, the estimate of when a run finishes.

pub mod bench;
pub mod commands;
pub mod crosscheck;
pub mod data;
pub mod device;
pub mod eval;
pub mod executor;
pub mod experiment;
pub mod hashing;
pub mod interrupt;
pub mod models;
pub mod numeric;
pub mod replicas;
pub mod report;
pub mod runner;
pub mod shell;
pub mod store;
pub mod train;
pub mod watch;
