#!/usr/bin/env python3
"""The PyTorch side of `cargo bench --bench ops_speed`.

  ops   SPEC...  : milliseconds of single ops, printed `<spec>\t<forward ms>\t<forward+backward ms>`
  infer          : inference images/s of timm models, printed `<model>\t<images per second>`

SPEC is `conv:n,c,h,w,o,kh,kw,stride,ph,pw`, `bnrelu:n,c,h,w`, `maxpool:n,c,h,w` (3x3 stride 2)
or `avgpool:n,c,h,w` (3x3 stride 1 SAME, padding excluded). Timing: one warm-up, then the
median of --reps runs; forward+backward backpropagates sum(y * r). Requirements: torch (timm
for `infer`)."""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["ops", "infer"])
ap.add_argument("specs", nargs="*")
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--size", type=int, default=107)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--models", default="inception_v3,inception_v4,inception_resnet_v2")
args = ap.parse_intermixed_args()
if args.threads > 0:
    torch.set_num_threads(args.threads)


def median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def op_for(spec):
    kind, dims = spec.split(":")
    d = [int(v) for v in dims.split(",")]
    n, c, h, w = d[:4]
    x = torch.randn(n, c, h, w, requires_grad=True)
    if kind == "conv":
        o, kh, kw, s, ph, pw = d[4:]
        wt = torch.randn(o, c, kh, kw, requires_grad=True)
        return lambda: F.conv2d(x, wt, stride=s, padding=(ph, pw))
    if kind == "bnrelu":
        g = torch.ones(c, requires_grad=True)
        b = torch.zeros(c, requires_grad=True)
        rm, rv = torch.zeros(c), torch.ones(c)
        return lambda: F.relu(F.batch_norm(x, rm, rv, g, b, training=True, momentum=0.1, eps=1e-3))
    if kind == "maxpool":
        return lambda: F.max_pool2d(x, 3, 2)
    if kind == "avgpool":
        return lambda: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    raise SystemExit(f"unknown op {kind}")


if args.mode == "ops":
    for spec in args.specs:
        f = op_for(spec)
        with torch.no_grad():
            fwd = median_ms(f, args.reps)
        y = f()
        r = torch.randn_like(y)

        def fwd_bwd():
            (f() * r).sum().backward()

        both = median_ms(fwd_bwd, args.reps)
        print(f"{spec}\t{fwd:.3f}\t{both:.3f}", flush=True)
else:
    import timm

    for name in args.models.split(","):
        model = timm.create_model(name, pretrained=False, num_classes=1000).eval()
        x = torch.randn(args.batch, 3, args.size, args.size)
        with torch.inference_mode():
            model(x)
            ms = median_ms(lambda: model(x), args.steps)
        # Images per second at the median step time, as repro's side reports it.
        print(f"{name}\t{args.batch * 1e3 / ms:.3f}", flush=True)
