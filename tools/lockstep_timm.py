#!/usr/bin/env python3
"""The reference side of `repro lockstep`: trains timm's network from repro's initial weights on
repro's batches with the paper's recipe, written here in a few explicit lines, and writes the
same trace repro writes.

Reads DIR/recipe.json, DIR/init.safetensors, DIR/batches.safetensors (written by
`repro lockstep`). Writes DIR/timm_steps.json (loss and gradient norm per step),
DIR/timm_grads_step1.safetensors (every parameter's gradient at step 1, before clipping and
weight decay), DIR/timm_final.safetensors (final state dict: weights and BatchNorm running
statistics) and DIR/timm_ema.safetensors (final moving averages).

The recipe, as TF-slim trains Inception and repro implements it:
- loss: cross-entropy with label smoothing ε: (1-ε)·nll + ε·mean(-log_softmax), plus
  aux_weight × the same on the auxiliary logits when the head is on;
- gradients of that loss; global norm over all of them; clipping g·c/max(norm, c) (TF's
  clip_by_global_norm);
- weight decay g += wd·w on conv/fc weights (names ending in `.weight`, not `bn.weight`),
  after clipping, as the gradient of TF-slim's l2_regularizer(wd) term wd·Σw²/2;
- RMSProp with TF semantics: ms starts at 1, ms = ρ·ms + (1-ρ)·g², mom = μ·mom + lr·g/√(ms+ε),
  w -= mom;
- BatchNorm in training mode with PyTorch's momentum convention (set on every BN module);
- moving average of every state entry (weights and running statistics) with TF's num_updates
  warm-up: the n-th update (n = 0, 1, ...) uses min(decay, (1+n)/(10+n)), averages start at
  the initial values;
- learning rate base·factor^floor(step/decay_steps), checked against repro's list;
- everything in the recipe's dtype (f32, or f64 to take rounding noise out of the comparison).

With --fixture OUT it also writes the compact regression fixture of tests/train_lockstep.rs:
OUT/recipe.json and OUT/timm.safetensors holding `loss` and `grad_norm` per step (f64), every
final BatchNorm running statistic (`final.<name>`), and the L2 norm of every final weight
(`final_norm.<name>`) and moving average (`ema_norm.<name>`).

With --yardstick (f32 recipes) timm also trains in f64 and writes DIR/timm_f64_steps.json: how
far f32 rounding alone moves timm's own trajectory, the yardstick for repro's f32 drift.

Usage: python3 tools/lockstep_timm.py DIR [--fixture OUT] [--yardstick] [--threads N]
"""

import argparse
import json
import math
import pathlib
import shutil
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import timm_scaled  # noqa: E402


def decays(name: str) -> bool:
    return name.endswith(".weight") and not name.endswith("bn.weight")


def smoothed_ce(logits, labels, eps):
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, labels[:, None]).squeeze(1)
    return ((1 - eps) * nll + eps * (-logp.mean(dim=1))).mean()


def train(r, d, dtype, grads_file=None):
    """Trains timm's network from repro's initial weights on repro's batches in `dtype`;
    returns (losses, gradient norms, learning rates, final state dict, moving averages)."""
    model = timm_scaled.create(r["arch"], r["width"], r["num_classes"], r["bn_momentum"],
                               r["bn_eps"], aux=r["aux_head"])
    timm_scaled.load_strict(model, load_file(d / "init.safetensors"))
    model = model.to(dtype)
    model.train()
    batches = load_file(d / "batches.safetensors")
    params = dict(model.named_parameters())

    rms, wd, clip = r["rmsprop"], r["weight_decay"], r["clip_norm"]
    ms = {n: torch.ones_like(p) for n, p in params.items()}
    mom = {n: torch.zeros_like(p) for n, p in params.items()}
    averaged = {n: t.detach().clone() for n, t in model.state_dict().items()
                if not n.endswith("num_batches_tracked")}

    losses, norms, lrs = [], [], []
    for step in range(r["steps"]):
        lr = r["base_lr"] * r["lr_decay_factor"] ** math.floor(step / r["lr_decay_steps"])
        if not math.isclose(lr, r["lr"][step], rel_tol=1e-12):
            sys.exit(f"step {step + 1}: lr {lr} here, {r['lr'][step]} in repro's recipe")
        x = batches[f"images.{step:04d}"].to(dtype)
        y = batches[f"labels.{step:04d}"].long()
        out = model(x)
        if isinstance(out, tuple):
            logits, aux = out
            loss = smoothed_ce(logits, y, r["label_smoothing"]) \
                + r["aux_weight"] * smoothed_ce(aux, y, r["label_smoothing"])
        else:
            loss = smoothed_ce(out, y, r["label_smoothing"])
        model.zero_grad(set_to_none=True)
        loss.backward()
        grads = {n: p.grad for n, p in params.items() if p.grad is not None}
        if step == 0 and grads_file:
            save_file({n: g.contiguous() for n, g in grads.items()}, grads_file)
        norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
        scale = clip / max(norm, clip) if clip > 0 else 1.0
        with torch.no_grad():
            for n, g in grads.items():
                p = params[n]
                g = g * scale
                if wd and decays(n):
                    g = g + wd * p
                ms[n].mul_(rms["decay"]).add_((1 - rms["decay"]) * g * g)
                mom[n].mul_(rms["momentum"]).add_(lr * g / torch.sqrt(ms[n] + rms["epsilon"]))
                p.sub_(mom[n])
            decay = min(r["ema_decay"], (1 + step) / (10 + step))
            state = model.state_dict()
            for n, avg in averaged.items():
                avg.mul_(decay).add_((1 - decay) * state[n])
        losses.append(loss.item())
        norms.append(norm)
        lrs.append(lr)
    final = {n: t.contiguous() for n, t in model.state_dict().items() if not n.endswith("num_batches_tracked")}
    return losses, norms, lrs, final, averaged


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=pathlib.Path)
    ap.add_argument("--fixture", type=pathlib.Path)
    ap.add_argument("--yardstick", action="store_true",
                    help="with an f32 recipe, also train timm in f64 (timm_f64_steps.json): the drift "
                         "rounding alone causes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d = args.dir
    r = json.loads((d / "recipe.json").read_text())
    if r["avg_pool_padding"] != timm_scaled.AVG_POOL_PADDING[r["arch"]]:
        sys.exit(f"{r['arch']}: timm pools with padding {timm_scaled.AVG_POOL_PADDING[r['arch']]}, "
                 f"the recipe says {r['avg_pool_padding']}")

    dtype = {"f32": torch.float32, "f64": torch.float64}[r["dtype"]]
    losses, norms, lrs, final, averaged = train(r, d, dtype, d / "timm_grads_step1.safetensors")
    (d / "timm_steps.json").write_text(json.dumps({"loss": losses, "grad_norm": norms, "lr": lrs}, indent=1))
    save_file(final, d / "timm_final.safetensors")
    save_file(averaged, d / "timm_ema.safetensors")
    print(f"{r['arch']}: timm trained {len(losses)} steps (torch {torch.__version__}, "
          f"timm {timm_scaled.timm.__version__}); last loss {losses[-1]:.6f}")

    if args.yardstick and r["dtype"] == "f32":
        # The same training in f64: how far f32 rounding alone moves timm's own trajectory.
        l64, n64, _, _, _ = train(r, d, torch.float64)
        (d / "timm_f64_steps.json").write_text(json.dumps({"loss": l64, "grad_norm": n64, "lr": lrs}, indent=1))
        print(f"{r['arch']}: timm trained again in f64 (the rounding yardstick)")

    if args.fixture:
        args.fixture.mkdir(parents=True, exist_ok=True)
        shutil.copy(d / "recipe.json", args.fixture / "recipe.json")
        fx = {"loss": torch.tensor(losses, dtype=torch.float64),
              "grad_norm": torch.tensor(norms, dtype=torch.float64)}
        for n, t in final.items():
            if n.endswith("running_mean") or n.endswith("running_var"):
                fx[f"final.{n}"] = t.clone()
            else:
                fx[f"final_norm.{n}"] = t.double().norm().reshape(1)
        for n, t in averaged.items():
            fx[f"ema_norm.{n}"] = t.double().norm().reshape(1)
        save_file(fx, args.fixture / "timm.safetensors",
                  metadata={"torch": torch.__version__, "timm": timm_scaled.timm.__version__})
        print(f"fixture: {args.fixture}")


if __name__ == "__main__":
    main()
