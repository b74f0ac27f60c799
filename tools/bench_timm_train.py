#!/usr/bin/env python3
"""The PyTorch + timm side of `cargo bench --bench train_step` and `repro bench compare`: the
time of the same training step as repro's (RMSProp as TF with eps 1.0, momentum 0.9; label
smoothing 0.1; clipping at 2.0; EMA 0.9999), or of a forward pass in inference mode, at repro's
width multiplier through tools/timm_scaled.py. Requirements: torch, timm.

  bench_timm_train.py [--size 107 --batch 16 --steps 3 --models ...]
      prints `<model>\t<images per second at the median step>` per line;
  bench_timm_train.py --serve
      first prints one JSON line ({"ready": true, "torch": ..., "timm": ..., "threads": ...,
      "bf16": ...}), then answers each JSON request read from stdin,
      {"mode", "model", "size", "batch", "width", "classes", "steps", "warmup", "precision",
      "channels_last"}, with one JSON line {"step_ms": [...], "layout": ...} or {"error": "..."}.
      `mode` is
      "train" (a training step; the default) or "eval" (a forward pass of the model in eval mode
      under torch.inference_mode()); `precision` is "f32" or "bf16" (autocast on the CPU:
      convolutions and matrix products in bf16, weights and optimizer in f32); `channels_last`
      (default false) puts the model and its input in torch.channels_last, the layout in which
      oneDNN runs the convolutions without converting each one's input and output; the answer's
      `layout` ("nchw" or "channels-last") is read from the strides of the input it ran on.
"""
import argparse
import json
import statistics
import sys
import time

import timm
import timm.optim
import timm.utils
import torch

import timm_scaled


def placed(model, x, channels_last):
    """The model and input in timm's default layout (NCHW), or both in channels-last."""
    if not channels_last:
        return model, x
    return (model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last))


def layout(x):
    """The layout `x` lies in, from its strides."""
    if x.is_contiguous():
        return "nchw"
    if x.is_contiguous(memory_format=torch.channels_last):
        return "channels-last"
    return "strided"


def training_step(model_name, size, batch, width, classes, precision, channels_last=False):
    """A closure running one training step of `model_name`, as repro's step."""
    model = timm_scaled.create(model_name, width, classes, bn_momentum=0.1).train()
    model, x = placed(model, torch.randn(batch, 3, size, size), channels_last)
    # timm's RMSpropTF has TF's epsilon placement and mean-square initialisation.
    opt = timm.optim.RMSpropTF(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9,
                               weight_decay=4e-5)
    ema = timm.utils.ModelEmaV2(model, decay=0.9999)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    y = torch.arange(batch) % classes
    if precision not in ("f32", "bf16"):
        raise ValueError(f"precision {precision!r}: f32 or bf16")
    autocast = precision == "bf16"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        ema.update(model)

    step.layout = layout(x)
    return step


def eval_step(model_name, size, batch, width, classes, precision, channels_last=False):
    """A closure running one forward pass of `model_name` in inference mode."""
    model = timm_scaled.create(model_name, width, classes, bn_momentum=0.1).eval()
    model, x = placed(model, torch.randn(batch, 3, size, size), channels_last)
    if precision not in ("f32", "bf16"):
        raise ValueError(f"precision {precision!r}: f32 or bf16")
    autocast = precision == "bf16"

    def step():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=autocast):
            model(x)

    step.layout = layout(x)
    return step


def step_ms(step, warmup, steps):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def bf16_support():
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older or newer torch without this probe
        return None


def serve():
    print(json.dumps({"ready": True, "torch": torch.__version__, "timm": timm.__version__,
                      "threads": torch.get_num_threads(), "bf16": bf16_support()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            make = {"train": training_step, "eval": eval_step}.get(r.get("mode", "train"))
            if make is None:
                raise ValueError(f"mode {r['mode']!r}: train or eval")
            step = make(r["model"], r["size"], r["batch"], r["width"], r["classes"],
                        r["precision"], bool(r.get("channels_last", False)))
            answer = {"step_ms": step_ms(step, r["warmup"], r["steps"]), "layout": step.layout}
        except Exception as e:  # reported to the caller, which goes on with the next request
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true", help="answer JSON requests on stdin")
    ap.add_argument("--size", type=int, default=107)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--channels-last", action="store_true",
                    help="model and input in torch.channels_last (oneDNN's own layout)")
    ap.add_argument("--width-check", type=float, default=None, help="old name of --width")
    ap.add_argument("--models", default="inception_v3,inception_v4,inception_resnet_v2")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.serve:
        return serve()
    width = args.width_check if args.width_check is not None else args.width
    for name in args.models.split(","):
        step = training_step(name, args.size, args.batch, width, args.classes, args.precision,
                             args.channels_last)
        times = step_ms(step, 1, args.steps)
        # Images per second at the median step time, as repro's side reports it.
        print(f"{name}\t{args.batch * 1e3 / statistics.median(times):.3f}", flush=True)


if __name__ == "__main__":
    main()
