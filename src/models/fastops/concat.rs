//! Concatenation: recorded on a fused stage's tape, through candle's graph in a differentiated
//! pass, and in inference passes outside the graph with the copies spread over the threads.
//! candle's `Tensor::cat` copies on the calling thread alone: in the evaluation of Inception-v4
//! at 299 px, batch 8, the blocks' concatenations took 33–36 ms a pass (Inception-ResNet-v2
//! 30–33) while the other core waited; spread, 20–22 (14–17).

use candle_core::{bail, DType, Device, Result, Storage, Tensor};

use super::inference::inferring;
use super::tape::{check, push, recording, Step};
use super::{par_items, uninit, Elem, SyncPtr};

/// `Tensor::cat(ts, dim)`: recorded inside a fused stage, outside candle's graph and in
/// parallel in an inference pass, else candle's (differentiable) concatenation.
pub fn cat(ts: &[&Tensor], dim: usize) -> Result<Tensor> {
    if ts.len() < 2 || !(recording() || inferring()) {
        return Tensor::cat(ts, dim);
    }
    if !recording() {
        return detached(ts, dim);
    }
    check(ts)?;
    // candle's copy on one thread: the parallel one measured 2–4 % slower in training
    // (Inception-ResNet-v2 at 107 px, batch 16: 20.3 / 20.4 / 19.6 → 20.0 / 20.0 / 18.8
    // images/s, the same binary alternated), even at 75 and 299 px.
    let out = candle_cat_detached(ts, dim)?;
    push(
        Step::Cat(ts.iter().map(|&t| t.clone()).collect(), dim),
        &out,
    );
    Ok(out)
}

/// Entries one parallel task copies at most (256 KiB of f32).
const PIECE: usize = 1 << 16;

/// `Tensor::cat(ts, dim)` as a new tensor outside candle's autograd graph (nothing is recorded
/// for a backward pass): the copies in parallel where every input is an f32 or f64 CPU tensor
/// whose rows are contiguous and evenly spaced ([`row_stride`]: a contiguous tensor or a
/// merged head's slice of channels), else candle's own concatenation (on the calling thread)
/// of the inputs detached.
fn detached(ts: &[&Tensor], dim: usize) -> Result<Tensor> {
    let parallel = ts.len() >= 2
        && ts.iter().all(|t| {
            matches!(t.device(), Device::Cpu)
                && row_stride(t, dim).is_some()
                && t.dtype() == ts[0].dtype()
                && t.rank() == ts[0].rank()
        })
        && dim < ts[0].rank()
        && ts
            .iter()
            .all(|t| (0..t.rank()).all(|d| d == dim || t.dims()[d] == ts[0].dims()[d]));
    match (parallel, ts.first().map(|t| t.dtype())) {
        (true, Some(DType::F32)) => copied::<f32>(ts, dim),
        (true, Some(DType::F64)) => copied::<f64>(ts, dim),
        _ => candle_cat_detached(ts, dim),
    }
}

/// How far apart `t`'s rows (its entries for each index of the dims before `dim`) lie, where
/// each row is contiguous and the rows are evenly spaced: a contiguous tensor, or a slice of one
/// along `dim` (a merged head's channels). `None` otherwise.
fn row_stride(t: &Tensor, dim: usize) -> Option<usize> {
    let (dims, strides) = (t.dims(), t.stride());
    let mut expected = 1;
    for d in (dim..dims.len()).rev() {
        if dims[d] != 1 && strides[d] != expected {
            return None;
        }
        expected *= dims[d];
    }
    let row = expected;
    // The dims before `dim` collapse into one evenly spaced index.
    let mut stride = None;
    for d in (0..dim).rev() {
        if dims[d] == 1 {
            continue;
        }
        match stride {
            None => stride = Some((strides[d], strides[d] * dims[d])),
            Some((first, next)) if strides[d] == next => stride = Some((first, next * dims[d])),
            Some(_) => return None,
        }
    }
    let step = stride.map_or(row, |(first, _)| first);
    (step >= row).then_some(step)
}

/// candle's concatenation (on the calling thread) of the inputs detached from its graph.
fn candle_cat_detached(ts: &[&Tensor], dim: usize) -> Result<Tensor> {
    let detached: Vec<Tensor> = ts.iter().map(|t| t.detach()).collect();
    Tensor::cat(&detached, dim)
}

/// The concatenation of tensors of the same rank, dtype `T` and sizes but along `dim`, each
/// with evenly spaced contiguous rows ([`row_stride`]): each output row (the entries before
/// `dim` fixed) is the inputs' rows one after the other.
fn copied<T: Elem>(ts: &[&Tensor], dim: usize) -> Result<Tensor> {
    let dims = ts[0].dims();
    let outer: usize = dims[..dim].iter().product();
    let inner: usize = dims[dim + 1..].iter().product();
    let rows: Vec<usize> = ts.iter().map(|t| t.dims()[dim] * inner).collect();
    let row: usize = rows.iter().sum();
    let mut shape = dims.to_vec();
    shape[dim] = ts.iter().map(|t| t.dims()[dim]).sum();
    let steps: Vec<usize> = ts
        .iter()
        .map(|t| row_stride(t, dim).expect("checked by the caller"))
        .collect();
    // Where each input's entries start, read under its storage's lock, held to the end.
    let storages: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let starts = storages
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(cpu) => {
                let entries = &cpu.as_slice::<T>()?[layout.start_offset()..];
                Ok(SyncPtr(entries.as_ptr().cast_mut()))
            }
            _ => bail!("concatenation of CPU tensors given another device's"),
        })
        .collect::<Result<Vec<_>>>()?;
    // Pieces: (input, row, offset in the row, length).
    let mut pieces = Vec::new();
    for o in 0..outer {
        for (i, &len) in rows.iter().enumerate() {
            for at in (0..len).step_by(PIECE) {
                pieces.push((i, o, at, PIECE.min(len - at)));
            }
        }
    }
    let prefix: Vec<usize> = rows
        .iter()
        .scan(0, |acc, &r| {
            let p = *acc;
            *acc += r;
            Some(p)
        })
        .collect();
    let mut out = uninit::<T>(outer * row);
    let dst = SyncPtr(out.as_mut_ptr());
    let copy = |k: usize| {
        let (i, o, at, len) = pieces[k];
        let (src, dst) = (&starts[i], &dst);
        // SAFETY: input `i` holds `outer` rows of rows[i] entries, steps[i] apart, from its
        // start; the pieces cover disjoint ranges of `out`, each once.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.0.add(o * steps[i] + at),
                dst.0.add(o * row + prefix[i] + at),
                len,
            )
        }
    };
    // A few small pieces are copied sooner than a parallel loop starts.
    match out.len() < PIECE {
        true => (0..pieces.len()).for_each(copy),
        false => par_items(pieces.len(), copy),
    }
    drop(storages);
    Tensor::from_vec(out, shape, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against candle's concatenation: every dim of rank-4 tensors, f32 and f64, inputs of
    /// different sizes along it (one larger than a piece), and a non-contiguous input (which
    /// takes candle's path); the result tracks no gradient, and `cat` leaves candle's graph only
    /// in inference passes.
    #[test]
    fn concatenations_equal_candles() -> Result<()> {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            for dim in 0..4 {
                let sizes = [3usize, 1, 70_000 / 35, 2];
                let parts: Vec<Tensor> = sizes
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| {
                        let mut shape = vec![2usize, 5, 7, 1];
                        shape[dim] = s;
                        let n: usize = shape.iter().product();
                        Tensor::arange(0f64, n as f64, &dev)?
                            .affine(1.0, 1e6 * k as f64)?
                            .reshape(shape)?
                            .to_dtype(dtype)
                    })
                    .collect::<Result<_>>()?;
                let refs: Vec<&Tensor> = parts.iter().collect();
                let want = Tensor::cat(&refs, dim)?;
                let got = detached(&refs, dim)?;
                assert_eq!(got.dims(), want.dims());
                let diff = (got.to_dtype(DType::F64)? - want.to_dtype(DType::F64)?)?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f64>()?;
                assert_eq!(diff, 0.0, "{dtype:?} along {dim}");
                assert!(!got.track_op());
            }
        }
        // Routing: candle's graph keeps a concatenation of a variable outside inference passes.
        let v = candle_core::Var::from_tensor(&Tensor::ones((2, 3), DType::F32, &dev)?)?;
        let w = Tensor::zeros((2, 1), DType::F32, &dev)?;
        assert!(cat(&[v.as_tensor(), &w], 1)?.track_op());
        let inferred = super::super::inference(|| cat(&[v.as_tensor(), &w], 1))?;
        assert!(!inferred.track_op());
        assert_eq!(
            inferred.to_vec2::<f32>()?,
            vec![vec![1.0, 1.0, 1.0, 0.0]; 2]
        );
        let a = Tensor::arange(0f32, 24.0, &dev)?.reshape((2, 3, 4))?;
        let b = a.transpose(1, 2)?.contiguous()?.transpose(1, 2)?;
        assert!(!b.is_contiguous());
        let got = detached(&[&a, &b], 1)?;
        let want = Tensor::cat(&[&a, &b], 1)?;
        assert_eq!(got.to_vec3::<f32>()?, want.to_vec3::<f32>()?);
        assert_eq!(
            row_stride(&b, 1),
            None,
            "a transposed input takes candle's path"
        );
        Ok(())
    }

    /// Slices of a wider tensor along the concatenated dim (a merged head's channels) and after
    /// an outer dim: copied in parallel from where their rows lie, equal to candle's.
    #[test]
    fn slices_along_the_dim_are_copied_where_they_lie() -> Result<()> {
        let dev = Device::Cpu;
        let wide = Tensor::arange(0f32, 4.0 * 9.0 * 300.0, &dev)?.reshape((4, 9, 300))?;
        let heads = [
            wide.narrow(1, 0, 2)?,
            wide.narrow(1, 2, 3)?,
            wide.narrow(1, 5, 4)?,
        ];
        let late = wide.narrow(0, 1, 3)?.narrow(1, 4, 5)?;
        assert_eq!(row_stride(&heads[1], 1), Some(9 * 300));
        assert_eq!(row_stride(&late, 1), Some(9 * 300));
        let other = Tensor::arange(0f32, 4.0 * 6.0 * 300.0, &dev)?.reshape((4, 6, 300))?;
        for parts in [
            vec![&heads[2], &heads[0], &other, &heads[1]],
            vec![&late, &other.narrow(0, 0, 3)?],
        ] {
            let want = Tensor::cat(&parts, 1)?;
            let got = super::super::inference(|| cat(&parts, 1))?;
            assert_eq!(got.to_vec3::<f32>()?, want.to_vec3::<f32>()?);
        }
        Ok(())
    }
}
