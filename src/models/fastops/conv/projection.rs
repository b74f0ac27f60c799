//! The end of an Inception-ResNet unit in an inference pass, `act(x + scale·(W·y + bias))` for
//! its 1×1 projection `W` of the branches' output `y`: where the projection runs image by image
//! (maps of [`super::POINTWISE_IMAGE_MIN_P`] positions or more), the sum with the trunk is done on
//! each image's projection as soon as its product is done, in place while it is still in cache,
//! instead of in a pass of its own over the whole batch that reads the projection back from
//! memory and writes a third buffer. Bit for bit [`super::conv2d`] followed by
//! [`super::super::scaled_residual`] (the same product, the same arithmetic).

use candle_core::{bail, DType, Layout, Result, Tensor};

use super::super::inference::inferring;
use super::super::profile::{span, Kind};
use super::super::{blocked, image_blocks, with_slice, Elem};
use super::epilogue::{Epilogue, ResidualEnd};
use super::{batched, fast_op, forward_direct, points};

/// `act(x + scale·(conv2d(y, weight) + bias))` (`act` a ReLU where `relu`) for a 1×1 `weight`,
/// in an inference pass where the projection runs image by image on the fast path; `None`
/// elsewhere (the caller runs the two ops).
pub fn project_onto_trunk(
    x: &Tensor,
    y: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    scale: f64,
    relu: bool,
) -> Result<Option<Tensor>> {
    let Some(op) = fast_op(y, weight, (0, 0), 1).filter(|_| inferring()) else {
        return Ok(None);
    };
    let g = op.geom(y.dims(), weight.dims())?;
    let whole_planes = g.pointwise() && !batched(&g) && !points::applies(&g);
    let trunk_fits = x.dims() == [g.n, g.o, g.oh, g.ow] && x.dtype() == y.dtype();
    if !(whole_planes && trunk_fits && x.is_contiguous() && bias.dims() == [g.o]) {
        return Ok(None);
    }
    let (y, w) = (blocked(y)?, weight.contiguous()?);
    let shape = (g.n, g.o, g.oh, g.ow);
    let out = match y.dtype() {
        DType::F32 => Tensor::from_vec(
            run::<f32>(x, &y, &w, bias, scale, relu, &g)?,
            shape,
            x.device(),
        ),
        _ => Tensor::from_vec(
            run::<f64>(x, &y, &w, bias, scale, relu, &g)?,
            shape,
            x.device(),
        ),
    };
    out.map(Some)
}

fn run<T: Elem>(
    x: &Tensor,
    y: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    scale: f64,
    relu: bool,
    g: &super::geom::Geom,
) -> Result<Vec<T>> {
    let _span = span(Kind::ConvForward);
    with_slice::<T, _>(x, |xs, lx| {
        with_slice::<T, _>(bias, |bs, lb| {
            with_slice::<T, _>(y, |ys, ly| {
                with_slice::<T, _>(w, |ws, lw| {
                    let end = ResidualEnd {
                        trunk: dense(xs, lx)?,
                        bias: dense(bs, lb)?,
                        scale: T::from_f64(scale),
                        relu,
                    };
                    let yb = image_blocks(ly).expect("made blocked above");
                    let wt = dense(ws, lw)?;
                    Ok(forward_direct(ys, yb, wt, g, Epilogue::Residual(&end)))
                })
            })
        })
    })
}

/// The entries of a contiguous tensor, in place.
fn dense<'a, T: Elem>(s: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => bail!("residual projection: an operand is not contiguous"),
    }
}
