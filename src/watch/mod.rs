//! Watching runs while they train: what the trainer tells its observers ([`RunObserver`]),
//! TensorBoard event files written from that ([`TensorBoardSink`]), and the estimate of
//! when a run finishes ([`eta`]).
//!
//! The trainer knows only [`RunObserver`]: it calls it on replica 0 when training starts
//! or resumes, after every step, and after every evaluation once the metrics row is
//! written. What an observer does with that (an events file, a report re-rendered) and how
//! often it acts on steps is its own business; the runner chooses the observers.

pub mod crc32c;
pub mod eta;
pub mod events;
mod observer;
mod protobuf;
pub mod tensorboard;

pub use eta::{estimate, Estimate, ProgressPoint};
pub use observer::{EvalPoint, Observers, RunObserver, RunStart, StepPoint, Unwatched};
pub use tensorboard::TensorBoardSink;
