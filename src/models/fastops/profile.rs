//! Where the time of the fast ops goes (`repro bench train --profile`): each op adds the wall
//! time of its forward and backward, seen from the thread that calls it (its parallel loops
//! included), to its kind's counter. Off unless a benchmark turns it on: a span is then one
//! relaxed load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The kinds of work counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ConvForward,
    ConvInputGradient,
    ConvWeightGradient,
    BnReluForward,
    BnReluBackward,
    PoolForward,
    PoolBackward,
    ResidualForward,
    ResidualBackward,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::ConvForward,
        Kind::ConvInputGradient,
        Kind::ConvWeightGradient,
        Kind::BnReluForward,
        Kind::BnReluBackward,
        Kind::PoolForward,
        Kind::PoolBackward,
        Kind::ResidualForward,
        Kind::ResidualBackward,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::ConvForward => "convolution forward",
            Kind::ConvInputGradient => "convolution input gradient",
            Kind::ConvWeightGradient => "convolution weight gradient",
            Kind::BnReluForward => "BatchNorm+ReLU forward",
            Kind::BnReluBackward => "BatchNorm+ReLU backward",
            Kind::PoolForward => "pooling forward",
            Kind::PoolBackward => "pooling backward",
            Kind::ResidualForward => "residual sum forward",
            Kind::ResidualBackward => "residual sum backward",
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; Kind::ALL.len()] = [const { AtomicU64::new(0) }; Kind::ALL.len()];
static CALLS: [AtomicU64; Kind::ALL.len()] = [const { AtomicU64::new(0) }; Kind::ALL.len()];

/// Turns counting on or off for the whole process.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Counts the time until it is dropped against its kind (when counting is on).
pub struct Span(Option<(Kind, Instant)>);

pub fn span(kind: Kind) -> Span {
    Span(ON.load(Ordering::Relaxed).then(|| (kind, Instant::now())))
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((kind, start)) = self.0 {
            let i = kind as usize;
            NANOS[i].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            CALLS[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Milliseconds and calls per kind since the last call, and the counters back at zero.
pub fn take() -> Vec<(Kind, f64, u64)> {
    Kind::ALL
        .iter()
        .map(|&k| {
            let i = k as usize;
            let ns = NANOS[i].swap(0, Ordering::Relaxed);
            (k, ns as f64 / 1e6, CALLS[i].swap(0, Ordering::Relaxed))
        })
        .collect()
}
