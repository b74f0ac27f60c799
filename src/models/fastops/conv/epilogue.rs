//! What a convolution's forward pass does to its outputs as it writes them: nothing, or, in
//! evaluation, the BatchNorm (running statistics) and ReLU that follow it, `max(0, y·a + b)`
//! with `(a, b)` of the output's channel, while the outputs are still in cache. The arithmetic is
//! [`super::super::bn_relu`]'s own function, so the results are the two ops' bit for bit.

use super::super::bn::{relu_affine_copy, relu_affine_in_place};
use super::super::Elem;

/// `None`: outputs as computed; `Some(ab)`: `max(0, y·a + b)`, `ab[o]` for output channel `o`.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a, T>(pub(crate) Option<&'a [(T, T)]>);

impl<T: Elem> Epilogue<'_, T> {
    pub(crate) const NONE: Self = Epilogue(None);

    /// Channel `o`'s outputs `ys`.
    #[inline]
    pub(crate) fn channel(&self, o: usize, ys: &mut [T]) {
        if let Some(ab) = self.0 {
            relu_affine_in_place(ys, ab[o]);
        }
    }

    /// Channel `o`'s outputs `src` written to `ys`.
    #[inline]
    pub(crate) fn channel_from(&self, o: usize, ys: &mut [T], src: &[T]) {
        match self.0 {
            Some(ab) => relu_affine_copy(ys, src, ab[o]),
            None => ys.copy_from_slice(src),
        }
    }

    /// Consecutive planes of `plane` outputs each, the first of them plane `first` of the
    /// N×O planes (channel `first mod O`).
    pub(crate) fn planes(&self, ys: &mut [T], plane: usize, first: usize) {
        if let Some(ab) = self.0 {
            for (k, yp) in ys.chunks_exact_mut(plane).enumerate() {
                relu_affine_in_place(yp, ab[(first + k) % ab.len()]);
            }
        }
    }
}
