//! Trainable 2-D pooling.
//!
//! candle 0.11 has a backward pass for pooling only when kernel == stride, and Inception uses
//! 3x3/stride-2 max pools and 3x3/stride-1 average pools. Here a pool is built from the k×k
//! shifted views of the (padded) input, each subsampled on the stride grid and combined with
//! `maximum` or `+`: every op involved has a gradient in candle, on every device. On the CPU the
//! fast ops of [`super::fastops`] (direct loops with their own backward) replace them.

use candle_core::{bail, Device, Result, Tensor};

/// What a pooling window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum over the window. Only used without padding (VALID) in these networks.
    Max,
    /// Average over the cells of the window that lie inside the input: TensorFlow's SAME
    /// average pooling, and PyTorch's `count_include_pad=False`.
    AvgExcludePad,
    /// Average over the whole window, padded zeros included: PyTorch's default
    /// `count_include_pad=True`, as timm's (torchvision's) inception_v3 uses it.
    AvgIncludePad,
}

/// A square pooling window with symmetric padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Pool2d {
    /// 3x3, stride 2, VALID max pooling (every reduction block and stem).
    pub fn max_3x3_s2() -> Self {
        Self {
            kind: PoolKind::Max,
            kernel: 3,
            stride: 2,
            padding: 0,
        }
    }

    /// 3x3, stride 1, SAME average pooling (the pooling branch of the Inception blocks).
    pub fn avg_3x3_same(kind: PoolKind) -> Self {
        Self {
            kind,
            kernel: 3,
            stride: 1,
            padding: 1,
        }
    }

    /// Output size along one axis, or `None` when the window does not fit.
    pub fn output_len(&self, len: usize) -> Option<usize> {
        let padded = len + 2 * self.padding;
        (padded >= self.kernel).then(|| (padded - self.kernel) / self.stride + 1)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.kind == PoolKind::Max && self.padding > 0 {
            bail!("padded max pooling is not supported (zero padding would change the maximum)")
        }
        let (_, _, h, w) = x.dims4()?;
        if self.output_len(h).is_none() || self.output_len(w).is_none() {
            bail!(
                "pooling window {}x{} does not fit a {h}x{w} input",
                self.kernel,
                self.kernel
            )
        }
        if super::fastops::usable(x) && x.rank() == 4 {
            match self.kind {
                PoolKind::Max => return super::fastops::max_pool(x, self.kernel, self.stride),
                kind if self.stride == 1 && self.kernel == 2 * self.padding + 1 => {
                    return super::fastops::avg_pool_same(
                        x,
                        self.padding,
                        kind == PoolKind::AvgIncludePad,
                    )
                }
                _ => {}
            }
        }
        self.stock_forward(x)
    }

    /// The pooling built from stock candle ops (every device).
    pub fn stock_forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (Some(oh), Some(ow)) = (self.output_len(h), self.output_len(w)) else {
            bail!(
                "pooling window {}x{} does not fit a {h}x{w} input",
                self.kernel,
                self.kernel
            )
        };
        let p = self.padding;
        let padded = if p > 0 {
            x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?
        } else {
            x.clone()
        };
        let mut acc: Option<Tensor> = None;
        for dy in 0..self.kernel {
            let rows = subsample(&padded, 2, dy, self.stride, oh)?;
            for dx in 0..self.kernel {
                let view = subsample(&rows, 3, dx, self.stride, ow)?;
                acc = Some(match (acc, self.kind) {
                    (None, _) => view,
                    (Some(a), PoolKind::Max) => a.maximum(&view)?,
                    (Some(a), _) => (a + view)?,
                });
            }
        }
        let acc = acc.expect("kernel is at least 1x1");
        match self.kind {
            PoolKind::Max => Ok(acc),
            PoolKind::AvgIncludePad => acc / (self.kernel * self.kernel) as f64,
            PoolKind::AvgExcludePad => {
                let key = Constant::Counts {
                    pool: *self,
                    h,
                    w,
                    dtype: x.dtype(),
                };
                let counts = constant(x.device(), key, || {
                    self.valid_counts(h, w, x.device())?.to_dtype(x.dtype())
                })?;
                acc.broadcast_div(&counts)
            }
        }
    }

    /// Number of non-padded input cells under each output position, shape (1, 1, oh, ow).
    fn valid_counts(&self, h: usize, w: usize, device: &Device) -> Result<Tensor> {
        let axis = |len: usize| -> Vec<f32> {
            let out = self.output_len(len).unwrap_or(0);
            (0..out)
                .map(|o| {
                    let start = (o * self.stride) as isize - self.padding as isize;
                    (0..self.kernel as isize)
                        .filter(|d| (0..len as isize).contains(&(start + d)))
                        .count() as f32
                })
                .collect()
        };
        let (rows, cols) = (axis(h), axis(w));
        let counts: Vec<f32> = rows
            .iter()
            .flat_map(|r| cols.iter().map(move |c| r * c))
            .collect();
        Tensor::from_vec(counts, (1, 1, rows.len(), cols.len()), device)
    }
}

/// `n` entries of `x` along `dim`, starting at `start`, every `stride`-th.
fn subsample(x: &Tensor, dim: usize, start: usize, stride: usize, n: usize) -> Result<Tensor> {
    if stride == 1 {
        return x.narrow(dim, start, n);
    }
    let key = Constant::Indices { start, stride, n };
    let idx = constant(x.device(), key, || {
        let idx: Vec<u32> = (0..n).map(|i| (start + i * stride) as u32).collect();
        Tensor::from_vec(idx, n, x.device())
    })?;
    x.index_select(&idx, dim)
}

/// The small constant tensors a pooling needs on its device: index grids and divisor maps.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Constant {
    Indices {
        start: usize,
        stride: usize,
        n: usize,
    },
    Counts {
        pool: Pool2d,
        h: usize,
        w: usize,
        dtype: candle_core::DType,
    },
}

/// `key`'s tensor on `device`, made by `make` the first time and kept for the process: on a
/// GPU each would otherwise be an upload from the host at every call (a dozen per strided max
/// pool, every step).
fn constant(
    device: &Device,
    key: Constant,
    make: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<(candle_core::DeviceLocation, Constant), Tensor>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let slot = (device.location(), key);
    if let Some(t) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&slot) {
        if t.device().same_device(device) {
            return Ok(t.clone());
        }
    }
    let t = make()?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(slot, t.clone());
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    fn grid(h: usize, w: usize) -> Tensor {
        let v: Vec<f32> = (0..h * w).map(|i| i as f32 + 1.0).collect();
        Tensor::from_vec(v, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    #[test]
    fn tf_same_average_excludes_padding_at_borders() {
        // 4x4 input holding 1..16 row by row.
        let y = Pool2d::avg_3x3_same(PoolKind::AvgExcludePad)
            .forward(&grid(4, 4))
            .unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // corner (0,0): cells 1,2,5,6 -> 14/4
        assert!((y[0] - 3.5).abs() < 1e-6);
        // top edge (0,1): 1,2,3,5,6,7 -> 24/6
        assert!((y[1] - 4.0).abs() < 1e-6);
        // interior (1,1): 1,2,3,5,6,7,9,10,11 -> 54/9
        assert!((y[5] - 6.0).abs() < 1e-6);
        // bottom-right corner (3,3): 11,12,15,16 -> 54/4
        assert!((y[15] - 13.5).abs() < 1e-6);
        // left edge (2,0): 5,6,9,10,13,14 -> 57/6
        assert!((y[8] - 9.5).abs() < 1e-6);
    }

    #[test]
    fn include_pad_average_divides_by_nine() {
        let y = Pool2d::avg_3x3_same(PoolKind::AvgIncludePad)
            .forward(&grid(4, 4))
            .unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((y[0] - 14.0 / 9.0).abs() < 1e-6);
        assert!((y[1] - 24.0 / 9.0).abs() < 1e-6);
        assert!((y[5] - 6.0).abs() < 1e-6);
    }

    #[test]
    fn max_pool_matches_candle_forward_and_valid_size() {
        let x = Tensor::randn(0f32, 1., (2, 3, 9, 11), &Device::Cpu).unwrap();
        let ours = Pool2d::max_3x3_s2().forward(&x).unwrap();
        assert_eq!(ours.dims(), &[2, 3, 4, 5]);
        let reference = x.max_pool2d_with_stride(3, 2).unwrap();
        let diff = (ours - reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn window_larger_than_input_is_an_error() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let err = Pool2d::max_3x3_s2().forward(&x).unwrap_err().to_string();
        assert!(err.contains("does not fit a 2x2 input"), "{err}");
    }

    /// Central finite differences of sum(pool(x) * r) against the analytic gradient.
    fn check_gradient(pool: Pool2d, dims: (usize, usize, usize, usize)) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1., dims, &dev).unwrap()).unwrap();
        let y = pool.forward(x.as_tensor()).unwrap();
        let r = Tensor::randn(0f64, 1., y.shape(), &dev).unwrap();
        let loss = |t: &Tensor| {
            (pool.forward(t).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let analytic = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let base = x
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let eps = 1e-6;
        for i in (0..base.len()).step_by(3) {
            let shifted = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                Tensor::from_vec(v, dims, &dev).unwrap()
            };
            let numeric = (loss(&shifted(eps)) - loss(&shifted(-eps))) / (2.0 * eps);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6,
                "{pool:?} at {i}: numeric {numeric} analytic {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        check_gradient(Pool2d::max_3x3_s2(), (2, 2, 7, 9));
        check_gradient(Pool2d::avg_3x3_same(PoolKind::AvgExcludePad), (1, 2, 5, 6));
        check_gradient(Pool2d::avg_3x3_same(PoolKind::AvgIncludePad), (1, 2, 5, 4));
        check_gradient(
            Pool2d {
                kind: PoolKind::AvgExcludePad,
                kernel: 5,
                stride: 3,
                padding: 0,
            },
            (1, 1, 11, 8),
        );
    }
}
