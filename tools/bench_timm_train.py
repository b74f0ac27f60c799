#!/usr/bin/env python3
"""The PyTorch + timm side of `cargo bench --bench train_step`: images/s of the same training
step (RMSProp as TF with eps 1.0, momentum 0.9; label smoothing 0.1; clipping at 2.0; EMA
0.9999). Prints `<model>\t<images per second>` per line. Requirements: torch, timm."""
import argparse
import statistics
import time

import timm
import timm.optim
import timm.utils
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=107)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--width-check", type=float, default=1.0, help="timm has width 1 only")
ap.add_argument("--models", default="inception_v3,inception_v4,inception_resnet_v2")
ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
args = ap.parse_args()
if args.threads > 0:
    torch.set_num_threads(args.threads)
if args.width_check != 1.0:
    raise SystemExit("timm models exist at width 1 only")

for name in args.models.split(","):
    model = timm.create_model(name, pretrained=False, num_classes=1000).train()
    # timm's RMSpropTF has TF's epsilon placement and mean-square initialisation.
    opt = timm.optim.RMSpropTF(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=4e-5)
    ema = timm.utils.ModelEmaV2(model, decay=0.9999)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.arange(args.batch) % 1000

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        ema.update(model)

    step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    # Images per second at the median step time, as repro's side reports it.
    print(f"{name}\t{args.batch / statistics.median(times):.3f}", flush=True)
