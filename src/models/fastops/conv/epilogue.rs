//! What a convolution's forward pass does to its outputs as it writes them, while they are still
//! in cache: nothing; in evaluation, the BatchNorm (running statistics) and ReLU that follow it,
//! `max(0, y·a + b)` with `(a, b)` of the output's channel; or, in an inference pass, the end of
//! the Inception-ResNet unit whose projection it is, `act(x + s·(y + bias))`. The arithmetic is
//! the separate ops' own functions ([`super::super::bn_relu`], [`super::super::scaled_residual`]),
//! so the results are theirs bit for bit.

use super::super::bn::{relu_affine_copy, relu_affine_in_place};
use super::super::residual::residual_planes_in_place;
use super::super::Elem;

#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a, T> {
    /// Outputs as computed.
    None,
    /// `max(0, y·a + b)`, `ab[o]` for output channel `o`.
    BnRelu(&'a [(T, T)]),
    /// `act(x + scale·(y + bias[o]))`; only for passes that write whole output planes
    /// ([`Epilogue::planes`]).
    Residual(&'a ResidualEnd<'a, T>),
}

/// The end of an Inception-ResNet unit whose projection is the convolution.
pub(crate) struct ResidualEnd<'a, T> {
    /// The unit's input, laid out as the convolution's output (N×O×OH×OW).
    pub(crate) trunk: &'a [T],
    pub(crate) bias: &'a [T],
    pub(crate) scale: T,
    pub(crate) relu: bool,
}

impl<'a, T: Elem> Epilogue<'a, T> {
    pub(crate) const NONE: Self = Epilogue::None;

    /// The BatchNorm+ReLU epilogue where `ab` is given, else none.
    pub(crate) fn bn_relu(ab: Option<&'a [(T, T)]>) -> Self {
        ab.map_or(Epilogue::None, Epilogue::BnRelu)
    }

    /// Channel `o`'s outputs `ys`.
    #[inline]
    pub(crate) fn channel(&self, o: usize, ys: &mut [T]) {
        match self {
            Epilogue::None => {}
            Epilogue::BnRelu(ab) => relu_affine_in_place(ys, ab[o]),
            Epilogue::Residual(_) => unreachable!("{}", WHOLE_PLANES),
        }
    }

    /// Channel `o`'s outputs `src` written to `ys`.
    #[inline]
    pub(crate) fn channel_from(&self, o: usize, ys: &mut [T], src: &[T]) {
        match self {
            Epilogue::None => ys.copy_from_slice(src),
            Epilogue::BnRelu(ab) => relu_affine_copy(ys, src, ab[o]),
            Epilogue::Residual(_) => unreachable!("{}", WHOLE_PLANES),
        }
    }

    /// Consecutive planes of `plane` outputs each, the first of them plane `first` of the
    /// N×O planes (channel `first mod O`).
    pub(crate) fn planes(&self, ys: &mut [T], plane: usize, first: usize) {
        match self {
            Epilogue::None => {}
            Epilogue::BnRelu(ab) => {
                for (k, yp) in ys.chunks_exact_mut(plane).enumerate() {
                    relu_affine_in_place(yp, ab[(first + k) % ab.len()]);
                }
            }
            Epilogue::Residual(end) => residual_planes_in_place(
                ys,
                end.trunk,
                end.bias,
                (end.bias.len(), plane, first),
                end.scale,
                end.relu,
            ),
        }
    }
}

/// Why the residual epilogue is never asked for parts of planes: only the image-by-image
/// pointwise products take it (see `projection.rs`).
const WHOLE_PLANES: &str = "the residual epilogue runs on whole output planes only";
