//! That a process's work on a device is ordered: one device per ordinal, one stream, so that
//! work queued on one thread (a forward pass on a rayon worker) is complete when another
//! thread (the main thread, reading results or saving a checkpoint) reads it.

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::{err, BenchOptions};
use crate::device::parse_device;
use crate::numeric::{max_abs, max_abs_diff};

/// Matrix size and chain length: long enough (milliseconds on a GPU) that a read not ordered
/// after the chain would see it unfinished.
const N: usize = 1024;
const PRODUCTS: usize = 24;

/// The line of `repro bench stream`.
#[derive(Debug, Serialize)]
pub struct StreamCheck {
    pub kind: &'static str,
    pub device: String,
    /// Whether naming the device twice gave the same device (and so the same stream).
    pub same_device: bool,
    /// The chain of products computed on a worker thread and read on this one, against the CPU:
    /// max |difference| / max |value|.
    pub worker_read_rel_diff: f64,
    /// Both of the above hold.
    pub ordered: bool,
    pub seconds: f64,
}

/// `x` multiplied by `m` [`PRODUCTS`] times, rescaled to stay near unit size.
fn chain(x: &Tensor, m: &Tensor) -> candle_core::Result<Tensor> {
    let mut y = x.clone();
    for _ in 0..PRODUCTS {
        y = (y.matmul(m)? / (N as f64).sqrt())?;
    }
    Ok(y)
}

/// Runs the check on `o.device`.
pub fn stream_check(o: &BenchOptions) -> Result<StreamCheck, String> {
    let start = Instant::now();
    let (device, name) = parse_device(&o.device)?;
    let (again, _) = parse_device(&o.device)?;
    let same_device = device.same_device(&again);
    let m = Tensor::randn(0f32, 1.0, (N, N), &Device::Cpu).map_err(err("input"))?;
    let x = Tensor::randn(0f32, 1.0, (8, N), &Device::Cpu).map_err(err("input"))?;
    let (md, xd) = (
        m.to_device(&device).map_err(err("upload"))?,
        x.to_device(&device).map_err(err("upload"))?,
    );
    let on_device = std::thread::scope(|s| s.spawn(|| chain(&xd, &md)).join())
        .map_err(|_| "the worker thread panicked".to_string())?
        .map_err(err("products on the device"))?;
    // Read at once on this thread: ordered after the worker's products only on one stream.
    let read = on_device.to_device(&Device::Cpu).map_err(err("read"))?;
    let reference = chain(&x, &m).map_err(err("products on the CPU"))?;
    let scale = max_abs(&reference).map_err(err("compare"))?;
    let worker_read_rel_diff =
        max_abs_diff(&reference, &read).map_err(err("compare"))? / scale.max(f64::MIN_POSITIVE);
    Ok(StreamCheck {
        kind: "stream",
        device: name,
        same_device,
        worker_read_rel_diff,
        ordered: same_device && worker_read_rel_diff < 1e-3,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_one_ordered_device() {
        let c = stream_check(&BenchOptions::default()).unwrap();
        assert!(c.same_device && c.ordered, "{c:?}");
        assert_eq!(c.worker_read_rel_diff, 0.0);
    }
}
