//! CPU fast paths for the operations that dominate Inception training: convolution (forward,
//! input gradient, weight gradient), BatchNorm + ReLU fused, and pooling.
//!
//! Each op is a candle custom op (`CustomOp2`/`CustomOp3`/`CustomOp1`) whose forward and backward
//! run on slices of the CPU storage:
//!
//! - [`conv2d`]: 1×1 stride-1 convolutions are plain matrix products over each image (no im2col);
//!   the others go through an im2col of a band of output rows (bounded so the band stays in
//!   cache) and one GEMM per band, with the zero padding of each axis written by the im2col
//!   itself (no padded copy of the input): each tap's entries found through a table made once
//!   per convolution, a constant shift of the plane where the stride is 1 and the output rows
//!   as wide as the input's, else a gather table. The input gradient is `Wᵀ·dY` per band
//!   followed by col2im; the weight gradient is `Σ dY·colᵀ`, accumulated per fixed group of images and summed
//!   in a fixed order, so results are deterministic for a given number of threads. Stride-1
//!   3×3, 5×5, 1×7 and 7×1 convolutions on large maps run by Winograd's minimal filtering
//!   instead (`conv/winograd.rs`; the one-tap axis of a 1×7 or 7×1 skipped, their windows read
//!   where they lie in the image); in inference passes, those on few channels, and the stride-1
//!   ones Winograd does not take, run as a packed product per image whose im2col matrix is read
//!   from the image as the product goes (`conv/implicit.rs`).
//! - [`conv_bn_relu`]: a convolution and its BatchNorm + ReLU as one graph node: in training
//!   candle's backward pass then keeps no gradient entry for the convolution's output; in
//!   evaluation the BatchNorm and ReLU are applied to the convolution's outputs as they are
//!   written (`conv/epilogue.rs`).
//! - [`bn_relu`]: batch statistics in one parallel pass per channel (f64 accumulation), the
//!   running statistics updated in place exactly as candle's `BatchNorm` computes them, then
//!   `max(0, x·a + b)` in place of candle's transpose/contiguous/broadcast chain; the backward
//!   recomputes `x̂` from the input instead of storing it.
//! - [`max_pool`] and [`avg_pool_same`]: direct loops over each plane, backward by scatter
//!   (max, first maximum of the window wins, as in PyTorch) or by a box sum of `dY / count`
//!   (average).
//! - [`scaled_residual`]: the tail of an Inception-ResNet unit, `act(x + scale·(u + bias))`, in
//!   one pass (four candle ops otherwise); in inference passes [`project_onto_trunk`] does it on
//!   each image's projection as it is made (`conv/projection.rs`), and
//!   [`conv_bn_relu_heads`] gives merged 1×1 heads their BatchNorms as the product writes.
//! - [`bf16`]: the convolutions' matrix products with bf16 operands and f32 sums
//!   (`--precision bf16`: AMX tiles or AVX512-BF16), chosen per convolution by its `Arith`.
//! - [`fused`] (`tape.rs`): in training, each stage of the network as one node of candle's
//!   graph; the ops above record themselves on a tape inside it, and its backward replays the
//!   tape without candle's zeros-plus-addition per gradient.
//!
//! [`configure_cpu`] sets up the process for them: the thread pools, and the C allocator's
//! thresholds so that freed buffers stay in the heap from one step to the next (`heap.rs`).
//! The fast ops run only on the CPU device with f32/f64 tensors; everywhere else (CUDA, other
//! dtypes) callers fall back to the stock candle ops. The stock path can also be forced with the
//! environment variable `REPRO_STOCK_OPS=1` (read once, at the first use) or [`set_enabled`], so
//! the two can be compared; `tests.rs` checks every fast op against the stock one.

pub mod bf16;
mod bn;
mod concat;
pub mod conv;
mod conv_bn;
mod heap;
mod inference;
mod parallel;
mod pool;
pub mod profile;
mod residual;
pub(crate) mod simd;
mod storage;
mod switch;
mod tape;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod weight_cache;

pub use bn::bn_relu;
pub use concat::cat;
pub use conv::conv2d;
pub use conv::projection::project_onto_trunk;
pub use conv_bn::{conv_bn_relu, conv_bn_relu_heads};
pub use heap::HugePageHeap;
pub use inference::{inference, inference_keeping};
pub use parallel::on_worker;
pub(crate) use parallel::{
    par_chunk_groups, par_chunks, par_items, par_map, sum_in_order, threads, SyncPtr,
    MIN_TASK_ENTRIES,
};
pub use pool::{avg_pool_same, max_pool};
pub use residual::scaled_residual;
pub(crate) use storage::{
    blocked, f64_entries, image_blocks, plane, uninit, vec_slice, with_slice, with_storage, zero,
    Elem,
};
pub(crate) use switch::device_paths;
pub use switch::{
    conv_compute_dtype, enabled, force_device_paths_on_cpu, set_conv_bf16, set_enabled, usable,
};
pub use tape::{fused, narrow, StageGrads};
pub use weight_cache::WeightCache;

/// Sets up the process for the fast ops: the thread pools and the C allocator. Call at the start
/// of `main`, before any thread exists.
pub fn configure_cpu() {
    heap::configure_heap();
    parallel::configure_thread_pools();
}

/// What this CPU lacks for bf16 convolutions (`None`: it has it all), in words for users.
/// `REPRO_CPU_BF16=off` makes a CPU that has it answer as one without (to see and test the
/// refusal).
pub fn bf16_missing_cpu_features() -> Option<String> {
    match std::env::var("REPRO_CPU_BF16").as_deref() {
        Ok("off") => Some("AVX512-BF16 is turned off (REPRO_CPU_BF16=off)".into()),
        _ => bf16::missing_cpu_features(),
    }
}
