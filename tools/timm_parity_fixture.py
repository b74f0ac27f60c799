#!/usr/bin/env python3
"""Writes the timm parity fixture that `tests/timm_parity.rs` checks repro's networks against.

For inception_v3, inception_v4 and inception_resnet_v2 it fills every tensor of timm's state
dict with deterministic, non-trivial values from a counter-based hash (the same formula is
implemented in Rust in `tests/common/deterministic.rs`), runs timm in eval mode on a
deterministic 2-image batch at 299 px and stores the logits, so the fixture stays small
(kilobytes) while the weights (hundreds of MB) are rebuilt on both sides.

Outputs (in tests/fixtures/):
  timm_logits.safetensors   `<model>.logits` [2, 1000] float32, metadata: versions
  timm_keys_<tag>.txt       the state-dict keys and shapes, as timm lists them

Requirements: torch, timm, safetensors, numpy (pip install torch timm safetensors numpy).
Not run by CI. Usage: python3 tools/timm_parity_fixture.py [--out tests/fixtures]
"""

import argparse
import math
import pathlib

import numpy as np
import timm
import torch
from safetensors.torch import save_file

MODELS = {"inception_v3": "v3", "inception_v4": "v4", "inception_resnet_v2": "irv2"}
IMAGE_SIZE = 299
BATCH = 2


def fnv1a32(name: str) -> int:
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def uniform_pm1(name: str, n: int) -> np.ndarray:
    """n float32 values in [-1, 1): lowbias32(seed + i * golden) -> top 24 bits."""
    i = np.arange(n, dtype=np.uint64)
    x = ((fnv1a32(name) + i * 0x9E3779B9) & 0xFFFFFFFF).astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    u = (x >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))
    return np.float32(2.0) * u - np.float32(1.0)


def deterministic_tensor(name: str, shape) -> np.ndarray:
    n = int(np.prod(shape)) if len(shape) else 1
    v = uniform_pm1(name, n)
    if name.endswith("running_var"):
        out = np.float32(1.0) + np.float32(0.5) * v
    elif name.endswith("bn.weight"):
        out = np.float32(1.0) + np.float32(0.25) * v
    elif name.endswith("bias") or name.endswith("running_mean"):
        out = np.float32(0.1) * v
    elif len(shape) == 4:  # conv: He-uniform, variance 2 / fan_in
        fan_in = shape[1] * shape[2] * shape[3]
        out = np.float32(math.sqrt(6.0 / fan_in)) * v
    elif len(shape) == 2:  # linear: variance 1 / fan_in
        out = np.float32(math.sqrt(3.0 / shape[1])) * v
    else:
        raise ValueError(f"no rule for {name} {shape}")
    return out.reshape(shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    shape = (BATCH, 3, IMAGE_SIZE, IMAGE_SIZE)
    x = torch.from_numpy(uniform_pm1("input", int(np.prod(shape))).reshape(shape).copy())
    logits = {}
    for name, tag in MODELS.items():
        model = timm.create_model(name, pretrained=False, num_classes=1000).eval()
        sd = model.state_dict()
        lines = []
        for key, t in sd.items():
            lines.append(f"{key}\t{list(t.shape)}")
            if key.endswith("num_batches_tracked"):
                continue
            t.copy_(torch.from_numpy(deterministic_tensor(key, tuple(t.shape)).copy()))
        model.load_state_dict(sd, strict=True)
        y = model(x)
        print(f"{name}: logits range [{y.min():.3f}, {y.max():.3f}], std {y.std():.3f}")
        logits[f"{name}.logits"] = y.contiguous()
        (out / f"timm_keys_{tag}.txt").write_text("\n".join(lines) + "\n")
    meta = {"timm": timm.__version__, "torch": torch.__version__, "image_size": str(IMAGE_SIZE), "batch": str(BATCH)}
    save_file(logits, str(out / "timm_logits.safetensors"), metadata=meta)
    print(f"wrote {out / 'timm_logits.safetensors'}")


if __name__ == "__main__":
    main()
