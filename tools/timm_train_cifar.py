#!/usr/bin/env python3
"""Reference trainer in PyTorch + timm for repro's CIFAR-10 "mini" runs.

It trains timm's inception_v4 / inception_resnet_v2 (and, optionally, inception_v3 without
its auxiliary head) at repro's width multiplier with repro's mini recipe and writes the
same metrics file, so that repro's training curves can be set against the curves of an
independent trainer (the spread over seeds of both). The network is built by
tools/timm_scaled.py and initialised by timm's own code (not repro's init): seeds differ
anyway and the comparison is statistical.

Usage (the full 1,875-step run of experiments/mini/runs.yaml, seed 1; --epochs 2 gives the
1,250 steps of experiments/mini/dynamics.yaml):

    /work/V/bin/python tools/timm_train_cifar.py --model inception_v4 --seed 1 \
        --out /tmp/timm_runs/inception_v4_seed1 --threads 1

--precision bf16 trains and evaluates under PyTorch's CPU autocast (bf16 convolutions and
matrix products, the rest f32), the reference for experiments/mini/bf16.yaml's question: does
bf16 train like f32 here too?

Run one training at a time on the 2-core machine; with other work on the machine use
--threads 1 (two threads then lose to contention). OMP_WAIT_POLICY defaults to PASSIVE here.

Outputs in --out DIR:
  metrics.parquet      one row per evaluation, repro's schema (src/store/metrics.rs,
                       METRICS_COLUMNS): epoch f64, step u64, images_seen u64, lr f64,
                       train_loss f64, top1_err f64, top5_err f64, eval_images u64,
                       images_per_s f64, wall_s f64. Errors are fractions in [0, 1].
  diagnostics.parquet  one row per evaluation: step u64, epoch f64, train_top1_err (the
                       training-mode logits of the training batches since the previous
                       row), ema_top1_err (= metrics' top1_err), raw_top1_err (the live
                       weights with their running statistics), raw_batchstats_top1_err (the
                       live weights, BatchNorm normalising with the statistics of each
                       evaluation batch of 100, the images in the seeded shuffled order of repro's loader
                       (seed 0) so that batches mix the classes; running statistics left untouched; dropout
                       off), grad_norm (the mean global gradient norm before clipping over
                       the steps since the previous row; NaN with clipping off). All f64
                       but step (u64): the columns of repro's src/store/diagnostics.rs.
  recipe.json          the resolved settings, the dataset, torch/timm versions.
  checkpoint.pt        every --checkpoint-every-steps steps and at every evaluation (written
                       to a temporary file, then renamed). A rerun resumes from it and drops
                       the rows written after its step. A rerun with other recipe settings
                       is refused.
  DONE                 written when the run has finished; a rerun then exits at once.
  DIVERGED             written when the loss or the gradient norm became NaN/inf (repro
                       stops such a run too); a rerun exits at once.

The recipe, each setting with where it comes from (repro sources, paths from the
repository root):

Scale (experiments/mini/runs.yaml, `defaults:`): width 0.25 (timm_scaled: every filter
  count x0.25, rounded half away from zero, as repro's `ModelConfig::ch`), 75 px inputs,
  10 classes, BatchNorm momentum 0.03 in PyTorch's convention (running = 0.97 running +
  0.03 batch; repro's BatchNorm uses the same convention: unbiased variance in the running
  update, biased in the normalisation), BatchNorm eps 1e-3 (src/models/config.rs
  `defaults::bn_eps`), dropout 0.2 on the pooled features before the classifier in
  training mode (src/models/config.rs `defaults::dropout` = 0.2 and src/models/network.rs;
  runs.yaml does not override it; timm_scaled builds the network with drop_rate 0, so this
  script sets `head_drop.p`). Residual scales of Inception-ResNet-v2: 0.17 / 0.10 / 0.20 in
  both (src/models/config.rs `default_residual_scales`, timm's Block35/17/8).

Data (src/runner/datasets.rs, src/data/source.rs, src/experiment/load.rs):
  - train = ${REPRO_CIFAR10}/train, ImageFolder: classes = sorted folder names, files of a
    class in sorted order (walkdir sorted by file name; .jpg/.jpeg/.png, hidden skipped).
  - 2,000 images per class: repro's seeded subset, reproduced exactly. For each class with
    more files than that, its sorted file list is Fisher-Yates shuffled by SplitMix64
    seeded from (data.subset_seed = 0, stream Subset, 0, FNV-1a-64 of the class name), the
    first 2,000 kept and sorted again by path (src/data/source.rs `Dataset::subset`,
    src/data/rng.rs `SampleRng`). The subset seed is not the run seed: every run trains on
    the same 20,000 images.
  - val = ${REPRO_CIFAR10}/val, all 2,000 images (eval_set: all), the training classes.
  - Epoch order: the dataset indices 0..N shuffled by SampleRng(seed, Shuffle, epoch, 0),
    batches of 32 in that order, the incomplete last batch dropped (drop_last; 20,000 / 32
    = 625 steps per epoch) (src/data/loader.rs `epoch_order`, src/train/trainer.rs).
  - Training preprocessing (src/data/augment.rs, TF-slim's inception_preprocessing),
    every random draw from SampleRng(seed, Augment, epoch, dataset index) in repro's order,
    so for a given seed this script draws the very crops, flips and colour changes repro
    draws:
      distorted bounding box with the whole image as object box: area range [0.25, 1.0]
      (runs.yaml `train_crop_area`), aspect ratio range [0.75, 1.33], min_object_covered
      0.1, 100 attempts, else the whole image (TF's GenerateRandomCrop as in
      `sample_distorted_box`); random horizontal flip (p = 0.5); the crop resized to 75x75
      with TF-1 legacy bilinear (align_corners=False, half_pixel_centers=False: output
      pixel o samples x0 + o*w/75, taps clamped to the crop's own pixels, no antialias;
      src/data/resize.rs); colour distortion "fast" (data.color_distortion default,
      src/experiment/load.rs): brightness +-32/255 and saturation x[0.5, 1.5] in one of the 2
      orders, on the resized image, no clamping in between (src/data/color.rs); clamp to
      [0, 1]; scale to [-1, 1] as (v - 0.5) * 2.
  - Evaluation preprocessing: TF central_crop keeping 0.875 of each side (32 px -> the
    28x28 box at offset 2; src/data/crops.rs), the same legacy bilinear resize to 75x75,
    scale to [-1, 1]; no colour change, no clamp. Evaluation batches of 100
    (runs.yaml eval_batch_size), in dataset order.

Optimisation (src/train/step.rs, optim.rs, clip.rs, loss.rs, ema.rs, schedule.rs,
trainer.rs; values from runs.yaml):
  - Loss: mean over the batch of (1 - 0.1) * nll + 0.1 * mean_c(-log_softmax) (TF's
    softmax_cross_entropy with label_smoothing=0.1; identical to torch's
    CrossEntropyLoss(label_smoothing=0.1), checked at start-up).
  - Backward; gradient clipping by global norm over the gradients of the loss (before
    weight decay): g * 2.0 / max(norm, 2.0). A NaN/inf loss or norm stops the run
    (repro: RunOutcome::Diverged).
  - RMSProp, TF semantics, implemented below: ms starts at 1, mom at 0;
    g += 4e-5 * w (weight decay added to the *clipped* gradient, inside the optimizer, only
    for names ending in ".weight" but not "bn.weight": conv and linear weights; biases and
    BatchNorm beta/gamma undecayed); ms = 0.9 ms + 0.1 g^2;
    mom = 0.9 mom + lr * g / sqrt(ms + 1.0); w -= mom.
  - Learning rate at fractional epoch step/625 (step = the 0-based index of the step being
    taken): 0.045 * 0.94^floor(epoch / 0.0375) (staircase; one decay every 23.4375 steps).
  - EMA after every update (TF ExponentialMovingAverage with num_updates): the n-th update
    (n = 0, 1, ...) uses d = min(0.9999, (1 + n) / (10 + n)), avg = d * avg + (1 - d) * live,
    for every variable including the BatchNorm running means and variances; the averages
    start as a copy of the initial weights. (num_batches_tracked, which repro does not
    have, is copied, not averaged.)
  - 3 epochs: total steps = round(3 * 625) = 1,875. Evaluation with the EMA weights and the
    EMA BatchNorm statistics every round(0.25 * 625) = 156 steps and at the last step
    (13 rows: steps 156, 312, ..., 1872, 1875). Checkpoints every 200 steps and at every
    evaluation.
  - Metrics row (src/train/trainer.rs): epoch = step / 625 after the step; lr = the rate of
    the last step; train_loss = mean of the step losses since the previous row (carried in
    the checkpoint); images_per_s = training images since the previous row over the
    seconds since that row was written (evaluation and checkpoint time excluded, data
    preparation included); wall_s = seconds of training sessions so far up to the end of
    this row's EMA evaluation (earlier evaluations included), summed over resumed sessions.
  - Top-k errors with repro's pessimistic tie rule (src/train/loss.rs `top_k_hits`): the
    label is a hit only if at most k classes, the label included, score >= its score.

Known differences from repro's pipeline:
  - Network: timm's code, initialised by timm/PyTorch (kaiming-uniform defaults for
    inception_v4 / inception_resnet_v2, truncated normal for inception_v3), not repro's
    initialiser; dropout masks from torch's generator, reseeded at every step from
    (seed, step), so different masks from repro's (same rate).
  - JPEG decoding: PIL (libjpeg-turbo) instead of the `image` crate (zune-jpeg); decoded
    pixels may differ by a few levels in places (chroma upsampling, IDCT rounding).
  - Float arithmetic: PyTorch's CPU kernels (and its summation orders) instead of repro's;
    the resize is computed as two small matrix products per image, in float32.
  - All images are decoded once and kept in memory (repro decodes them every epoch; the
    result is the same).
  - inception_v3: repro's mini runs use the auxiliary head (weight 0.4, spec `aux_weight`)
    and avg-pool padding "exclude"; timm's v3 auxiliary head does not fit 75 px inputs and
    timm's v3 pools with count_include_pad=True. `--model inception_v3` therefore trains
    without the auxiliary loss and with timm's padding: NOT the same recipe, optional.
  - Interpolation: bilinear only (repro also has bicubic; the mini runs use bilinear).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

# OpenMP threads that spin while waiting stall badly when another process shares the cores
# (steps 10-50x slower on the 2-core machine under load); passive waiting avoids that.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import timm  # noqa: E402
import timm_scaled  # noqa: E402

# --------------------------------------------------------------------------------------
# repro's counter-based randomness (src/hashing.rs, src/data/rng.rs), bit for bit.

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E37_79B9_7F4A_7C15
STREAM_AUGMENT, STREAM_SHUFFLE, STREAM_SUBSET = 1, 2, 3


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
    return z ^ (z >> 31)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF2_9CE4_8422_2325
    for b in data:
        h = ((h ^ b) * 0x0000_0100_0000_01B3) & MASK64
    return h


class SampleRng:
    """SplitMix64 whose starting state hashes (seed, stream, epoch, index), as repro's."""

    def __init__(self, seed: int, stream: int, epoch: int, index: int):
        h = mix64((seed ^ GOLDEN_GAMMA) & MASK64)
        h = mix64(h ^ ((stream * GOLDEN_GAMMA) & MASK64))
        h = mix64(h ^ ((epoch * 0xD6E8_FEB8_6659_FD93) & MASK64))
        h = mix64(h ^ ((index * 0xA076_1D64_78BD_642F) & MASK64))
        self.state = h

    def next_u64(self) -> int:
        self.state = (self.state + GOLDEN_GAMMA) & MASK64
        return mix64(self.state)

    def unit(self) -> float:
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.unit()

    def below(self, n: int) -> int:
        return (self.next_u64() * n) >> 64

    def coin(self) -> bool:
        return (self.next_u64() >> 63) == 1

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def step_seed(seed: int, step: int) -> int:
    """Seed of the dropout mask of a step (repro's `mix` in src/train/step.rs)."""
    return mix64(((seed * GOLDEN_GAMMA) & MASK64) ^ step)


def round_half_away(x: float) -> int:
    """Rust's f64::round for x >= 0 (Python's round() rounds half to even)."""
    f = math.floor(x)
    return int(f + 1 if x - f >= 0.5 else f)


# --------------------------------------------------------------------------------------
# Dataset: ImageFolder scan and subset as src/data/source.rs.

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _sorted_entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory), key=lambda n: n.encode())


def _scan_class(directory: Path, out: list[Path]) -> None:
    for name in _sorted_entries(directory):
        if name.startswith("."):
            continue
        path = directory / name
        if path.is_dir():
            _scan_class(path, out)
        elif path.is_file() and name.lower().endswith(IMAGE_EXTENSIONS):
            out.append(path)


def image_folder(root: Path) -> tuple[list[str], list[list[Path]]]:
    """Class names (sorted) and each class's files (sorted, recursive)."""
    if not root.is_dir():
        raise SystemExit(f"dataset folder {root} does not exist (set --data or REPRO_CIFAR10)")
    classes = [n for n in _sorted_entries(root) if not n.startswith(".") and (root / n).is_dir()]
    files = []
    for c in classes:
        fs: list[Path] = []
        _scan_class(root / c, fs)
        if not fs:
            raise SystemExit(f"class folder {root / c} holds no images")
        files.append(fs)
    if not classes:
        raise SystemExit(f"{root} holds no class folders")
    return classes, files


def subset_per_class(classes, files, max_per_class: int | None, subset_seed: int):
    """repro's `Dataset::subset` with ClassSelection::All: a seeded subset per class."""
    out = []
    for name, fs in zip(classes, files):
        fs = list(fs)
        if max_per_class is not None and len(fs) > max_per_class:
            SampleRng(subset_seed, STREAM_SUBSET, 0, fnv1a64(name.encode())).shuffle(fs)
            fs = sorted(fs[:max_per_class], key=lambda p: tuple(s.encode() for s in p.parts))
        out.append(fs)
    return out


def decode_all(files_per_class) -> tuple[list[torch.Tensor], list[int]]:
    """(3, H, W) uint8 tensors and labels, class-grouped in order (the dataset indices)."""
    images, labels = [], []
    for label, fs in enumerate(files_per_class):
        for p in fs:
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
            images.append(torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous())
            labels.append(label)
    return images, labels


# --------------------------------------------------------------------------------------
# Preprocessing as src/data/augment.rs, crops.rs, resize.rs, color.rs.

def random_crop_size(width, height, min_area, max_area, aspect, rng):
    """TF's GenerateRandomCrop as repro's `random_crop_size`; None if rejected."""
    def width_for(h):
        return round_half_away(h * aspect)

    h = round_half_away(math.sqrt(min_area / aspect))
    max_h = round_half_away(math.sqrt(max_area / aspect))
    if width_for(max_h) > width:
        max_h = int((width + 0.5 - 1e-7) / aspect)
        if width_for(max_h) > width:
            max_h -= 1
    max_h = min(max_h, height)
    h = min(h, max_h)
    if h < max_h:
        h += rng.below(max_h - h + 1)
    w = width_for(h)
    if w * h < min_area:
        h += 1
        w = width_for(h)
    if w * h > max_area:
        h -= 1
        w = width_for(h)
    ok = min_area <= w * h <= max_area and w > 0 and h > 0 and w <= width and h <= height
    return (w, h) if ok else None


def sample_distorted_box(width, height, area_range, aspect_range, min_object_covered,
                         max_attempts, rng):
    image_area = float(width) * float(height)
    min_area, max_area = area_range[0] * image_area, area_range[1] * image_area
    for _ in range(max_attempts):
        aspect = rng.uniform(aspect_range[0], aspect_range[1])
        size = random_crop_size(width, height, min_area, max_area, aspect, rng)
        if size is not None:
            w, h = size
            if w * h >= min_object_covered * image_area:
                x = rng.below(width - w + 1)
                y = rng.below(height - h + 1)
                return (float(x), float(y), float(w), float(h))
    return (0.0, 0.0, float(width), float(height))


def central_crop(width, height, fraction):
    def side(n):
        offset = math.floor((n - n * fraction) / 2.0)
        return float(offset), float(n - 2 * offset)

    (x, w), (y, h) = side(width), side(height)
    return (x, y, w, h)


@functools.lru_cache(maxsize=65536)
def bilinear_matrix(start, length, n_out, size, gain, mirror):
    """(n_out, size) float32 weights of TF-1 legacy bilinear sampling of [start, start+len)
    with taps clamped to the crop's own pixels (crop-then-resize). Cached: do not modify."""
    last = size - 1
    lo = min(max(math.floor(start), 0), last)
    hi = min(max(math.ceil(start + length) - 1, lo), last)
    m = np.zeros((n_out, size), dtype=np.float32)
    scale = length / n_out
    for o in range(n_out):
        src_o = n_out - 1 - o if mirror else o
        pos = start + src_o * scale
        base = math.floor(pos)
        frac = pos - base
        for k in (0, 1):
            i = int(min(max(base + k, lo), hi))
            m[o, i] += np.float32(1.0 - abs(frac - k)) * np.float32(gain)
    return torch.from_numpy(m)


def resample(img_u8: torch.Tensor, box, size: int, mirror: bool) -> torch.Tensor:
    """(3, size, size) float32 in [0, 1]: the box resampled with legacy bilinear."""
    _, height, width = img_u8.shape
    x, y, w, h = box
    wx = bilinear_matrix(x, w, size, width, 1.0 / 255.0, mirror)
    wy = bilinear_matrix(y, h, size, height, 1.0, False)
    return wy @ img_u8.to(torch.float32) @ wx.T


def saturate(t: torch.Tensor, factor: float) -> torch.Tensor:
    v = t.max(0).values
    mn = t.min(0).values
    s = (v - mn) / v
    k = (s * factor).clamp(0.0, 1.0) / s
    out = v - (v - t) * k
    out = torch.where((s <= 0) | torch.isnan(s), t, out)
    return torch.where(v <= 0, v.expand_as(t), out)


def rgb_to_hsv(t):
    r, g, b = t[0], t[1], t[2]
    v = t.max(0).values
    delta = v - t.min(0).values
    s = torch.where(v > 0, delta / v, torch.zeros_like(v))
    h = torch.where(v == r, (g - b) / delta, torch.where(v == g, 2.0 + (b - r) / delta,
                                                         4.0 + (r - g) / delta))
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(delta <= 0, torch.zeros_like(h), h)
    return h, s, v


def hsv_to_rgb(h, s, v):
    h6 = h * 6.0

    def channel(k):
        t = torch.remainder(h6 + k, 6.0)
        g = (t - 3.0).abs() - 1.0
        return v * (1.0 - s * (1.0 - g.clamp(0.0, 1.0)))

    return torch.stack([channel(0.0), channel(4.0), channel(2.0)])


def color_op(t: torch.Tensor, op: tuple[str, float]) -> torch.Tensor:
    kind, p = op
    if kind == "brightness":
        return t + p
    if kind == "saturation":
        return saturate(t, p)
    if kind == "hue":
        h, s, v = rgb_to_hsv(t)
        return hsv_to_rgb(torch.remainder(h + p, 1.0), s, v)
    if kind == "contrast":
        mean = t.to(torch.float64).mean(dim=(1, 2), keepdim=True).to(torch.float32)
        return (t - mean) * p + mean
    raise ValueError(kind)


def color_ops(mode: str, rng: SampleRng) -> list:
    """repro's `color_ops`: the ops and their drawn parameters, in order of application."""
    if mode == "off":
        return []
    ordering = rng.below(2 if mode == "fast" else 4)
    b = ("brightness", float(np.float32(rng.uniform(-32.0 / 255.0, 32.0 / 255.0))))
    s = ("saturation", float(np.float32(rng.uniform(0.5, 1.5))))
    if mode == "fast":
        return [b, s] if ordering == 0 else [s, b]
    h = ("hue", float(np.float32(rng.uniform(-0.2, 0.2))))
    c = ("contrast", float(np.float32(rng.uniform(0.5, 1.5))))
    return [[b, s, h, c], [s, b, c, h], [c, h, b, s], [h, s, c, b]][ordering]


def train_image(img_u8, cfg, seed, epoch, index) -> torch.Tensor:
    rng = SampleRng(seed, STREAM_AUGMENT, epoch, index)
    _, height, width = img_u8.shape
    box = sample_distorted_box(width, height, tuple(cfg["train_crop_area"]), (0.75, 1.33),
                               0.1, 100, rng)
    mirror = rng.coin()  # flip is on in every repro run
    ops = color_ops(cfg["color"], rng)
    t = resample(img_u8, box, cfg["image_size"], mirror)
    for op in ops:
        t = color_op(t, op)
    return (t.clamp(0.0, 1.0) - 0.5) * 2.0


def eval_image(img_u8, cfg) -> torch.Tensor:
    _, height, width = img_u8.shape
    box = central_crop(width, height, cfg["eval_crop_fraction"])
    return (resample(img_u8, box, cfg["image_size"], False) - 0.5) * 2.0


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    SampleRng(seed, STREAM_SHUFFLE, epoch, 0).shuffle(order)
    return order


# --------------------------------------------------------------------------------------
# Loss, errors, optimizer, EMA (src/train/*.rs).

def smoothed_cross_entropy(logits, labels, eps):
    log_p = F.log_softmax(logits, dim=1)
    nll = -log_p.gather(1, labels[:, None]).mean()
    if eps == 0.0:
        return nll
    uniform = -log_p.mean(dim=1).mean()
    return (1.0 - eps) * nll + eps * uniform


def top_k_hits(logits, labels, k):
    k = min(k, logits.shape[1])
    label_score = logits.gather(1, labels[:, None])
    at_least = (logits >= label_score).sum(dim=1)
    return ((at_least >= 1) & (at_least <= k)).sum().item()


def decays(name: str) -> bool:
    """repro's WeightDecay::weights_only rule: conv/linear weights, not BatchNorm's gamma."""
    return name.endswith(".weight") and not name.endswith("bn.weight")


class TfRmsProp:
    """tf.compat.v1.train.RMSPropOptimizer (non-centred) with repro's weight decay."""

    def __init__(self, named_params, decay, momentum, eps, weight_decay):
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.decay, self.momentum, self.eps, self.wd = decay, momentum, eps, weight_decay
        self.decayed = [decays(n) and weight_decay != 0.0 for n in self.names]
        self.ms = [torch.ones_like(p) for p in self.params]
        self.mom = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        ws = [self.params[i] for i in idx]
        gs = [self.params[i].grad for i in idx]
        # Weight decay on the (already clipped) gradient: g + wd * w.
        gs = [g + self.wd * w if self.decayed[i] else g for i, g, w in zip(idx, gs, ws)]
        ms = [self.ms[i] for i in idx]
        mom = [self.mom[i] for i in idx]
        torch._foreach_mul_(ms, self.decay)  # ms = decay ms + (1 - decay) g^2
        torch._foreach_addcmul_(ms, gs, gs, value=1.0 - self.decay)
        denom = torch._foreach_add(ms, self.eps)  # sqrt(ms + eps): TF puts eps inside
        torch._foreach_sqrt_(denom)
        torch._foreach_mul_(mom, self.momentum)  # mom = momentum mom + lr g / denom
        torch._foreach_addcdiv_(mom, gs, denom, value=lr)
        torch._foreach_sub_(ws, mom)  # w -= mom

    def state(self):
        return {"ms": dict(zip(self.names, self.ms)), "mom": dict(zip(self.names, self.mom))}

    def load_state(self, state):
        for slot in ("ms", "mom"):
            saved = state[slot]
            if set(saved) != set(self.names):
                raise SystemExit(f"checkpoint: optimizer slot `{slot}` has other variables")
            target = getattr(self, slot)
            for i, n in enumerate(self.names):
                target[i].copy_(saved[n])


@torch.no_grad()
def clip_by_global_norm(params, clip_norm: float) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).item()
    if math.isfinite(norm) and norm > clip_norm:
        torch._foreach_mul_(grads, clip_norm / norm)
    return norm


class Ema:
    """TF ExponentialMovingAverage(decay, num_updates) over the whole state dict."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup, self.num_updates = decay, warmup, 0

    def next_decay(self) -> float:
        if not self.warmup:
            return self.decay
        n = float(self.num_updates)
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        d = self.next_decay()
        shadow, current = self.model.state_dict(), live.state_dict()
        avg_s, avg_l = [], []
        for k, s in shadow.items():
            if s.is_floating_point():
                avg_s.append(s)
                avg_l.append(current[k])
            else:  # num_batches_tracked
                s.copy_(current[k])
        torch._foreach_mul_(avg_s, d)
        torch._foreach_add_(avg_s, avg_l, alpha=1.0 - d)
        self.num_updates += 1


# --------------------------------------------------------------------------------------
# Evaluation.

def bn_modules(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def logits_of(model, x, bf16):
    """The model's f32 logits for x; bf16: the forward pass under PyTorch's CPU bf16 autocast
    (--precision bf16), in training and evaluation alike."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(x).float()


@torch.no_grad()
def evaluate(model, images, labels, batch_size, batch_stats=False, bf16=False):
    """(top-1 error, top-5 error). batch_stats: BatchNorm normalises with each batch's own
    statistics; its running statistics are saved and restored; dropout stays off. bf16: under
    the CPU's bf16 autocast (as the run trains with --precision bf16)."""
    was_training = model.training
    model.eval()
    saved = None
    if batch_stats:
        saved = [(m, m.running_mean.clone(), m.running_var.clone(),
                  m.num_batches_tracked.clone()) for m in bn_modules(model)]
        for m in bn_modules(model):
            m.train()
    if batch_stats:
        # Class-sorted batches would normalise the class signal away: visit the images in
        # the seeded order repro's loader gives (shuffle, seed 0, epoch 0), as repro does.
        perm = torch.tensor(epoch_order(images.shape[0], 0, 0))
        images, labels = images[perm], labels[perm]
    hits1 = hits5 = 0
    for i in range(0, images.shape[0], batch_size):
        logits = logits_of(model, images[i:i + batch_size], bf16)
        y = labels[i:i + batch_size]
        hits1 += top_k_hits(logits, y, 1)
        hits5 += top_k_hits(logits, y, 5)
    if saved is not None:
        for m, mean, var, nbt in saved:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(nbt)
    model.train(was_training)
    n = images.shape[0]
    return 1.0 - hits1 / n, 1.0 - hits5 / n


# --------------------------------------------------------------------------------------
# Files.

METRICS_SCHEMA = {
    "epoch": pl.Float64, "step": pl.UInt64, "images_seen": pl.UInt64, "lr": pl.Float64,
    "train_loss": pl.Float64, "top1_err": pl.Float64, "top5_err": pl.Float64,
    "eval_images": pl.UInt64, "images_per_s": pl.Float64, "wall_s": pl.Float64,
}
DIAGNOSTICS_SCHEMA = {
    "step": pl.UInt64, "epoch": pl.Float64, "train_top1_err": pl.Float64,
    "ema_top1_err": pl.Float64, "raw_top1_err": pl.Float64,
    "raw_batchstats_top1_err": pl.Float64, "grad_norm": pl.Float64,
}


def write_parquet(path: Path, rows: list[dict], schema: dict) -> None:
    df = pl.DataFrame(rows, schema=schema)
    tmp = path.with_name(path.name + ".tmp")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def read_rows(path: Path, schema: dict, max_step: int) -> list[dict]:
    if not path.exists():
        return []
    df = pl.read_parquet(path)
    if list(df.columns) != list(schema):
        raise SystemExit(f"{path}: unexpected columns {df.columns}")
    return [r for r in df.to_dicts() if r["step"] <= max_step]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------

def parse_args(argv=None):
    default_data = os.environ.get("REPRO_CIFAR10", "/work/shared/datasets/cifar10")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", required=True,
                    choices=["inception_v4", "inception_resnet_v2", "inception_v3"],
                    help="inception_v3 trains without its auxiliary head (not repro's recipe)")
    ap.add_argument("--seed", type=int, default=0,
                    help="run seed: init, dropout, epoch order, augmentation (repro's `seed`; "
                         "runs without `seed:` in runs.yaml use 0)")
    ap.add_argument("--data", default=default_data, help="root holding train/ and val/")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these weights (safetensors under timm's names, e.g. "
                         "repro's init.safetensors) instead of timm's initialisation")
    ap.add_argument("--out", required=True, type=Path, help="run folder")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop (with a checkpoint, without DONE) after this many steps in total")
    ap.add_argument("--train-per-class", type=int, default=2000, help="0: every image")
    ap.add_argument("--subset-seed", type=int, default=0, help="repro's data.subset_seed")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--image-size", type=int, default=75)
    ap.add_argument("--bn-momentum", type=float, default=0.03)
    ap.add_argument("--bn-eps", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.045)
    ap.add_argument("--lr-decay-factor", type=float, default=0.94)
    ap.add_argument("--lr-decay-epochs", type=float, default=0.0375)
    ap.add_argument("--no-staircase", action="store_true", help="continuous decay")
    ap.add_argument("--rms-decay", type=float, default=0.9)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--rms-epsilon", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=4e-5)
    ap.add_argument("--clip-norm", type=float, default=2.0, help="0 disables clipping")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                    help="bf16: PyTorch's CPU autocast in training and evaluation (convolutions "
                         "and matrix products in bf16; weights, BatchNorm, loss, optimizer and "
                         "moving average in f32), as repro's train.precision: bf16")
    ap.add_argument("--ema-decay", type=float, default=0.9999)
    ap.add_argument("--no-ema-warmup", action="store_true")
    ap.add_argument("--train-crop-area", type=float, nargs=2, default=[0.25, 1.0])
    ap.add_argument("--color", choices=["off", "fast", "full"], default="fast")
    ap.add_argument("--eval-crop-fraction", type=float, default=0.875)
    ap.add_argument("--eval-every-epochs", type=float, default=0.25)
    ap.add_argument("--eval-every-steps", type=int, default=None,
                    help="overrides --eval-every-epochs (for quick tests)")
    ap.add_argument("--checkpoint-every-steps", type=int, default=200)
    ap.add_argument("--skip-raw-eval", action="store_true",
                    help="diagnostics: NaN instead of the two live-weight evaluations "
                         "(evaluation takes a third of the time)")
    args = ap.parse_args(argv)
    if not 0 <= args.seed < 2**64:
        ap.error("--seed must be in [0, 2^64)")
    return args


def recipe_of(args, n_train, n_val, classes, steps_per_epoch, total_steps, eval_every):
    """The settings that define the run (a checkpoint of other settings is refused)."""
    return {
        "model": args.model, "seed": args.seed, "width": args.width,
        "init": str(args.init) if args.init else "timm",
        "image_size": args.image_size, "num_classes": len(classes),
        "bn_momentum": args.bn_momentum, "bn_eps": args.bn_eps, "dropout": args.dropout,
        "aux_head": False, "epochs": args.epochs, "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "optimizer": {"kind": "rmsprop_tf", "decay": args.rms_decay,
                      "momentum": args.momentum, "epsilon": args.rms_epsilon},
        "lr": {"base_lr": args.lr, "decay_factor": args.lr_decay_factor,
               "decay_epochs": args.lr_decay_epochs, "staircase": not args.no_staircase},
        "weight_decay": args.weight_decay, "clip_norm": args.clip_norm,
        "label_smoothing": args.label_smoothing, "precision": args.precision,
        "ema": {"decay": args.ema_decay, "warmup": not args.no_ema_warmup},
        "train_images_per_class": args.train_per_class or None,
        "subset_seed": args.subset_seed, "train_crop_area": list(args.train_crop_area),
        "color_distortion": args.color, "eval_crop_fraction": args.eval_crop_fraction,
        "interpolation": "bilinear (TF-1 legacy)", "drop_last": True,
        "train_images": n_train, "val_images": n_val, "classes": classes,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "eval_every_steps": eval_every,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for marker in ("DONE", "DIVERGED"):
        if (out / marker).exists():
            print(f"{out}: {marker} exists; nothing to do", flush=True)
            return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass

    # The loss is torch's smoothed cross-entropy, as the docstring claims.
    lg, lb = torch.randn(7, 10, dtype=torch.float64), torch.arange(7) % 10
    ref = nn.CrossEntropyLoss(label_smoothing=0.1)(lg, lb)
    assert torch.allclose(smoothed_cross_entropy(lg, lb, 0.1), ref, atol=1e-12)

    data = Path(args.data)
    t0 = time.perf_counter()
    classes, train_files = image_folder(data / "train")
    train_files = subset_per_class(classes, train_files, args.train_per_class or None,
                                   args.subset_seed)
    val_classes, val_files = image_folder(data / "val")
    if val_classes != classes:
        raise SystemExit(f"{data / 'val'} does not hold the training classes {classes}")
    train_images, train_labels = decode_all(train_files)
    val_u8, val_label_list = decode_all(val_files)
    cfg = {"image_size": args.image_size, "train_crop_area": args.train_crop_area,
           "color": args.color, "eval_crop_fraction": args.eval_crop_fraction}
    val_images = torch.stack([eval_image(im, cfg) for im in val_u8])
    val_labels = torch.tensor(val_label_list, dtype=torch.int64)
    del val_u8
    print(f"data: {len(train_images)} training images, {len(val_label_list)} validation "
          f"images, {len(classes)} classes ({time.perf_counter() - t0:.1f} s)", flush=True)

    n_train = len(train_images)
    steps_per_epoch = n_train // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit("the training set is smaller than one batch")
    total_steps = max(1, round_half_away(args.epochs * steps_per_epoch))
    eval_every = args.eval_every_steps or max(1, round_half_away(
        args.eval_every_epochs * steps_per_epoch))
    recipe = recipe_of(args, n_train, len(val_label_list), classes, steps_per_epoch,
                       total_steps, eval_every)

    # Seeds: init from --seed; dropout reseeded per step; data from repro's SampleRng.
    random.seed(args.seed)
    np.random.seed(args.seed % 2**32)
    torch.manual_seed(args.seed)
    if args.model == "inception_v3":
        print("warning: inception_v3 trains without the auxiliary head and with timm's "
              "avg-pool padding: not repro's recipe", flush=True)
    model = timm_scaled.create(args.model, args.width, len(classes), args.bn_momentum,
                               bn_eps=args.bn_eps)
    model.head_drop.p = args.dropout
    if args.init:
        # repro's seeded initial weights (`repro lockstep --width 0.25 --size 75 --steps 1
        # --seed S --no-reference` writes them): the same start as repro's run of seed S.
        from safetensors.torch import load_file
        timm_scaled.load_strict(model, load_file(args.init))
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    opt = TfRmsProp(named, args.rms_decay, args.momentum, args.rms_epsilon, args.weight_decay)
    ema = Ema(model, args.ema_decay, not args.no_ema_warmup)

    st = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "images_seen": 0, "loss_sum": 0.0,
          "loss_count": 0, "train_hits": 0, "train_seen": 0, "grad_norm_sum": 0.0,
          "grad_norm_steps": 0, "wall_s": 0.0}
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["recipe"] != recipe:
            diff = sorted(k for k in recipe if ck["recipe"].get(k) != recipe[k])
            raise SystemExit(f"{ckpt_path} was written with other settings ({diff}); "
                             "use another --out")
        model.load_state_dict(ck["model"])
        ema.model.load_state_dict(ck["ema"])
        ema.num_updates = ck["ema_num_updates"]
        opt.load_state(ck["optim"])
        st = ck["state"]
        print(f"resuming from {ckpt_path} at step {st['step']}", flush=True)
    metrics = read_rows(out / "metrics.parquet", METRICS_SCHEMA, st["step"])
    diagnostics = read_rows(out / "diagnostics.parquet", DIAGNOSTICS_SCHEMA, st["step"])
    write_parquet(out / "metrics.parquet", metrics, METRICS_SCHEMA)
    write_parquet(out / "diagnostics.parquet", diagnostics, DIAGNOSTICS_SCHEMA)

    recipe_json = dict(recipe)
    recipe_json.update({
        "data_root": str(data.resolve()), "threads": torch.get_num_threads(),
        "checkpoint_every_steps": args.checkpoint_every_steps,
        "torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__,
        "polars": pl.__version__, "python": platform.python_version(),
        "parameters": sum(p.numel() for p in params),
        "script": "tools/timm_train_cifar.py",
    })
    atomic_write_text(out / "recipe.json", json.dumps(recipe_json, indent=2) + "\n")

    def save():
        ck = {"recipe": recipe, "model": model.state_dict(), "ema": ema.model.state_dict(),
              "ema_num_updates": ema.num_updates, "optim": opt.state(), "state": dict(st)}
        tmp = out / "checkpoint.pt.tmp"
        torch.save(ck, tmp)
        os.replace(tmp, ckpt_path)

    def lr_at(epoch: float) -> float:
        periods = max(epoch, 0.0) / args.lr_decay_epochs
        if not args.no_staircase:
            periods = math.floor(periods)
        return args.lr * args.lr_decay_factor ** periods

    if args.max_steps is not None and st["step"] >= args.max_steps:
        print(f"step {st['step']} >= --max-steps {args.max_steps}; nothing to do", flush=True)
        return 0
    bf16 = args.precision == "bf16"
    session_start = time.perf_counter()
    wall_before = st["wall_s"]
    interval_start, interval_images = time.perf_counter(), 0
    while st["step"] < total_steps:
        epoch = st["epoch"]
        order = epoch_order(n_train, args.seed, epoch)
        for position in range(st["batch_in_epoch"], steps_per_epoch):
            rows = order[position * args.batch_size:(position + 1) * args.batch_size]
            x = torch.stack([train_image(train_images[i], cfg, args.seed, epoch, i)
                             for i in rows])
            y = torch.tensor([train_labels[i] for i in rows], dtype=torch.int64)
            lr = lr_at(st["step"] / steps_per_epoch)

            torch.manual_seed(step_seed(args.seed, st["step"]))  # the dropout mask
            for p in params:
                p.grad = None
            logits = logits_of(model, x, bf16)
            loss = smoothed_cross_entropy(logits, y, args.label_smoothing)
            loss_value = loss.item()
            norm = float("nan")  # NaN when clipping is off, as repro's diagnostics
            if math.isfinite(loss_value):
                loss.backward()
                if args.clip_norm > 0:
                    norm = clip_by_global_norm(params, args.clip_norm)
            if not math.isfinite(loss_value) or math.isinf(norm) or (
                    args.clip_norm > 0 and math.isnan(norm)):
                bad = loss_value if not math.isfinite(loss_value) else norm
                atomic_write_text(out / "DIVERGED", json.dumps(
                    {"step": st["step"] + 1, "value": bad}) + "\n")
                print(f"step {st['step'] + 1}: loss/gradient norm {bad}; the run stops here",
                      flush=True)
                return 2
            opt.step(lr)
            ema.update(model)

            st["step"] += 1
            st["batch_in_epoch"] += 1
            st["images_seen"] += len(rows)
            st["loss_sum"] += loss_value
            st["loss_count"] += 1
            st["train_hits"] += top_k_hits(logits.detach(), y, 1)
            st["train_seen"] += len(rows)
            st["grad_norm_sum"] += norm
            st["grad_norm_steps"] += 1
            interval_images += len(rows)
            if st["batch_in_epoch"] == steps_per_epoch:
                st["epoch"] += 1
                st["batch_in_epoch"] = 0

            step = st["step"]
            if step % eval_every == 0 or step == total_steps:
                train_seconds = time.perf_counter() - interval_start
                ema_top1, ema_top5 = evaluate(ema.model, val_images, val_labels,
                                              args.eval_batch_size, bf16=bf16)
                # As repro: wall_s after the EMA evaluation, before the diagnostics.
                st["wall_s"] = wall_before + time.perf_counter() - session_start
                if args.skip_raw_eval:
                    raw_top1 = raw_bs_top1 = float("nan")
                else:
                    raw_top1, _ = evaluate(model, val_images, val_labels, args.eval_batch_size,
                                           bf16=bf16)
                    raw_bs_top1, _ = evaluate(model, val_images, val_labels,
                                              args.eval_batch_size, batch_stats=True, bf16=bf16)
                epoch_f = step / steps_per_epoch
                row = {"epoch": epoch_f, "step": step, "images_seen": st["images_seen"],
                       "lr": lr, "train_loss": st["loss_sum"] / max(st["loss_count"], 1),
                       "top1_err": ema_top1, "top5_err": ema_top5,
                       "eval_images": int(val_images.shape[0]),
                       "images_per_s": interval_images / max(train_seconds, 1e-9),
                       "wall_s": st["wall_s"]}
                train_top1 = 1.0 - st["train_hits"] / max(st["train_seen"], 1)
                metrics.append(row)
                diagnostics.append({"step": step, "epoch": epoch_f,
                                    "train_top1_err": train_top1, "ema_top1_err": ema_top1,
                                    "raw_top1_err": raw_top1,
                                    "raw_batchstats_top1_err": raw_bs_top1,
                                    "grad_norm": st["grad_norm_sum"]
                                    / max(st["grad_norm_steps"], 1)})
                write_parquet(out / "metrics.parquet", metrics, METRICS_SCHEMA)
                write_parquet(out / "diagnostics.parquet", diagnostics, DIAGNOSTICS_SCHEMA)
                print(f"step {step}/{total_steps} epoch {epoch_f:.3f} lr {lr:.5f} "
                      f"loss {row['train_loss']:.4f} train-top1 {train_top1:.4f} "
                      f"top1 ema {ema_top1:.4f} raw {raw_top1:.4f} "
                      f"raw-batchstats {raw_bs_top1:.4f} top5 ema {ema_top5:.4f} "
                      f"grad-norm {diagnostics[-1]['grad_norm']:.3f} "
                      f"{row['images_per_s']:.1f} img/s wall {st['wall_s']:.0f} s", flush=True)
                st.update(loss_sum=0.0, loss_count=0, train_hits=0, train_seen=0,
                          grad_norm_sum=0.0, grad_norm_steps=0)
                save()
                interval_start, interval_images = time.perf_counter(), 0
            elif step % max(args.checkpoint_every_steps, 1) == 0:
                st["wall_s"] = wall_before + time.perf_counter() - session_start
                save()
            if args.max_steps is not None and step >= args.max_steps and step < total_steps:
                st["wall_s"] = wall_before + time.perf_counter() - session_start
                save()
                print(f"stopping at step {step} (--max-steps); rerun to continue", flush=True)
                return 0
            if step >= total_steps:
                break
    atomic_write_text(out / "DONE", json.dumps({"steps": st["step"],
                                                "last": metrics[-1] if metrics else None})
                      + "\n")
    print(f"done: {st['step']} steps, {st['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
