#!/usr/bin/env python3
"""The PyTorch + timm side of `scripts/gpu-check.sh`, and its summary.

  gpu_check.py torch --device cuda --size 299 --batch 32 --steps 10 [--precisions f32,tf32,bf16]
      Training images/s of timm's inception_v3, inception_v4 and inception_resnet_v2 with the
      step repro trains with (RMSProp as TF: eps 1.0 inside the root, momentum 0.9, decay 0.9;
      label smoothing 0.1; clipping at 2.0; EMA 0.9999), and evaluation crops/s; one JSON line
      per measurement on stdout (the same fields as `repro bench`).
  gpu_check.py compare-weights NAME A.safetensors B.safetensors
      One JSON line: the largest relative L2 difference over the tensors of two weight files
      (the data-parallel check: two GPUs against one process accumulating two micro-batches).
  gpu_check.py summarize results.jsonl [--dmon dmon.txt] > summary.md
      A Markdown report: parity, repro vs PyTorch images/s and their ratio, the smoke run.

Precisions: f32 (TF32 off), tf32 (TF32 matmuls and convolutions), bf16 (torch.autocast bf16,
TF32 for what stays f32). cudnn.benchmark is on and the layout is NCHW, as a user would run
timm out of the box. Requirements: torch, timm (present on the GPU machine).
"""
import argparse
import json
import sys
import time

TIMM_MODELS = ["inception_v3", "inception_v4", "inception_resnet_v2"]


def torch_bench(args):
    import timm
    import timm.optim
    import timm.utils
    import torch

    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    for precision in args.precisions.split(","):
        tf32 = precision in ("tf32", "bf16")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        autocast = precision == "bf16"
        for name in args.models.split(","):
            for kind in args.kinds.split(","):
                try:
                    rec = one(torch, timm, dev, name, kind, precision, autocast, args)
                except Exception as e:  # keep going: one failure must not hide the rest
                    rec = {"kind": kind, "model": name, "precision": precision, "error": repr(e)[:300]}
                rec["framework"] = "torch"
                print(json.dumps(rec), flush=True)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()


def one(torch, timm, dev, name, kind, precision, autocast, args):
    import timm.optim
    import timm.utils

    model = timm.create_model(name, pretrained=False, num_classes=1000).to(dev)
    batch = args.batch if kind == "train" else args.eval_batch
    x = torch.randn(batch, 3, args.size, args.size, device=dev)
    y = torch.arange(batch, device=dev) % 1000
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast)
    if kind == "train":
        model.train()
        opt = timm.optim.RMSpropTF(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=4e-5)
        ema = timm.utils.ModelEmaV2(model, decay=0.9999)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

        def step():
            opt.zero_grad(set_to_none=True)
            with amp:
                loss = loss_fn(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
            ema.update(model)
            return loss
    else:
        model.eval()

        def step():
            with torch.inference_mode(), amp:
                return model(x).float().sum()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    start = time.perf_counter()
    for _ in range(args.steps):
        t = time.perf_counter()
        step().item()  # one read back per step, as repro's step reads its loss
        times.append((time.perf_counter() - t) * 1e3)
    sync()
    secs = time.perf_counter() - start
    rec = {
        "kind": kind, "model": name, "device": str(dev), "precision": precision, "size": args.size,
        "batch": batch, "steps": args.steps, "per_s": args.steps * batch / secs, "step_ms": times,
    }
    if dev.type == "cuda":
        rec["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return rec


def summarize(args):
    recs = []
    for path in args.files:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        recs.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    out = ["# GPU check", ""]
    for r in recs:
        if r.get("kind") == "compare":
            verdict = "error: " + r["error"] if "error" in r else (
                f"max relative L2 difference {r['max_rel_l2']:.2e} ({r['worst']})")
            out.append(f"- {r['name']}: {verdict}")
    env = [r for r in recs if r.get("kind") == "env"]
    for r in env:
        out.append(f"- {r.get('what')}: {r.get('value')}")
    for r in recs:
        if r.get("kind") == "stream":
            verdict = "one device, one stream, ordered" if r.get("ordered") else "NOT ORDERED"
            out.append(f"- stream check on {r.get('device')}: {verdict} (same device: {r.get('same_device')}, "
                       f"worker-thread products read on the main thread: relative difference {r.get('worker_read_rel_diff', float('nan')):.1e})")
    parity = [r for r in recs if r.get("kind") == "parity"]
    if parity:
        out += ["", "## CPU/GPU parity (same seeded weights, same input)", "",
                "Gradients: relative L2 difference per variable, ‖g_gpu − g_cpu‖ / max(‖g_cpu‖, 1e-4 ‖all g_cpu‖).", "",
                "| model | precision | size | eval logits max abs diff (max abs) | train logits max abs diff (max abs) | grads: worst relative L2 (the five worst) | verdict |",
                "|---|---|---:|---|---|---|---|"]
        for r in parity:
            if "error" in r:
                out.append(f"| {r.get('model')} | {r.get('precision')} | | error: {r['error'][:200]} | | | FAIL |")
                continue
            # f32 on cuBLAS vs the CPU's GEMMs: ~1e-4 relative through ~100 layers is normal.
            tol = 2e-3 if r["precision"] == "f32" else 5e-2
            ok = (r["eval_logits_max_abs_diff"] <= tol * max(1.0, r["eval_logits_max_abs"])
                  and r["train_logits_max_abs_diff"] <= tol * max(1.0, r["train_logits_max_abs"])
                  and r["grad_max_rel_l2"] <= 10 * tol)
            worst = ", ".join(f"{w['name']} {w['rel_l2']:.1e}" for w in r.get("grad_worst", []))
            out.append(
                f"| {r['model']} | {r['precision']} | {r['size']} | {r['eval_logits_max_abs_diff']:.2e} ({r['eval_logits_max_abs']:.3g}) "
                f"| {r['train_logits_max_abs_diff']:.2e} ({r['train_logits_max_abs']:.3g}) | {r['grad_max_rel_l2']:.2e} ({worst}) "
                f"| {'ok' if ok else 'CHECK'} |")
    for kind, unit in (("train", "images/s"), ("eval", "crops/s")):
        ours = {(r.get("model"), r.get("precision")): r for r in recs if r.get("kind") == kind and r.get("framework") != "torch"}
        theirs = {(r.get("model"), r.get("precision")): r for r in recs if r.get("kind") == kind and r.get("framework") == "torch"}
        if not ours and not theirs:
            continue
        out += ["", f"## {kind}: {unit}", "",
                f"| model | precision | size | batch | repro {unit} | PyTorch+timm {unit} | repro / PyTorch | repro median step ms | torch peak GiB |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for key in sorted(set(ours) | set(theirs)):
            a, b = ours.get(key, {}), theirs.get(key, {})
            pa = a.get("per_s")
            pb = b.get("per_s")
            ratio = f"{pa / pb:.2f}" if pa and pb else "n/a"
            med = sorted(a["step_ms"])[len(a["step_ms"]) // 2] if a.get("step_ms") else None
            fa = f"{pa:.1f}" if pa else ("error: " + a["error"][:60] if "error" in a else "n/a")
            fb = f"{pb:.1f}" if pb else ("error: " + b["error"][:60] if "error" in b else "n/a")
            mem = f"{b['max_memory_gib']:.1f}" if "max_memory_gib" in b else ""
            size = a.get("size") or b.get("size", "")
            batch = a.get("batch") or b.get("batch", "")
            out.append(f"| {key[0]} | {key[1]} | {size} | {batch} | {fa} | {fb} | {ratio} | {'' if med is None else f'{med:.0f}'} | {mem} |")
    phases = [r for r in recs if r.get("kind") == "train" and r.get("phase_ms") and r.get("framework") != "torch"]
    if phases:
        names = [p["phase"] for p in phases[0]["phase_ms"]]
        out += ["", "## repro training step by phase (ms, median of the phase steps; each phase waited for)", "",
                "| model | precision | " + " | ".join(names) + " | step |", "|---|---|" + "---:|" * (len(names) + 1)]
        for r in phases:
            ms = {p["phase"]: p["ms"] for p in r["phase_ms"]}
            med = sorted(r["step_ms"])[len(r["step_ms"]) // 2] if r.get("step_ms") else float("nan")
            out.append(f"| {r['model']} | {r['precision']} | " + " | ".join(f"{ms.get(n, 0):.1f}" for n in names) + f" | {med:.1f} |")
    dmon = utilisation(args.dmon) if getattr(args, "dmon", None) else None
    if dmon:
        out += ["", f"GPU utilisation while the check ran (nvidia-smi dmon, {dmon['samples']} samples): "
                f"SM {dmon['sm_mean']:.0f} % on average, {dmon['sm_max']:.0f} % at most; memory used at most {dmon['fb_max']:.0f} MiB"]
    steps = [r for r in recs if r.get("kind") == "step"]
    if steps:
        out += ["", "## Script steps", "", "| step | exit status | seconds | note |", "|---|---:|---:|---|"]
        for r in steps:
            out.append(f"| {r['name']} | {r['rc']} | {r['seconds']} | {r.get('note', '')} |")
    print("\n".join(out))


def utilisation(path):
    """Mean and peak SM utilisation and peak memory from `nvidia-smi dmon -s um` output."""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return None
    header = next((l.lstrip("#").split() for l in lines if l.startswith("#") and "sm" in l.split()), None)
    if not header:
        return None
    sm, fb = [], []
    for l in lines:
        if l.startswith("#"):
            continue
        cols = l.split()
        if len(cols) != len(header):
            continue
        try:
            sm.append(float(cols[header.index("sm")]))
            if "fb" in header:
                fb.append(float(cols[header.index("fb")]))
        except ValueError:
            continue
    if not sm:
        return None
    return {"samples": len(sm), "sm_mean": sum(sm) / len(sm), "sm_max": max(sm), "fb_max": max(fb) if fb else float("nan")}


def compare_weights(args):
    import torch
    from safetensors.torch import load_file
    a, b = load_file(args.a), load_file(args.b)
    worst, worst_name = 0.0, None
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b or a[k].shape != b[k].shape:
            print(json.dumps({"kind": "compare", "name": args.name, "error": f"{k}: missing or reshaped"}))
            return 1
        x, y = a[k].double(), b[k].double()
        rel = float((x - y).norm() / max(float(y.norm()), 1e-12))
        if rel > worst:
            worst, worst_name = rel, k
    print(json.dumps({"kind": "compare", "name": args.name, "max_rel_l2": worst, "worst": worst_name,
                      "tensors": len(a)}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("torch")
    t.add_argument("--device", default="cuda")
    t.add_argument("--size", type=int, default=299)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--eval-batch", type=int, default=128)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--precisions", default="f32,tf32,bf16")
    t.add_argument("--kinds", default="train,eval")
    t.add_argument("--models", default=",".join(TIMM_MODELS))
    c = sub.add_parser("compare-weights")
    c.add_argument("name")
    c.add_argument("a")
    c.add_argument("b")
    s = sub.add_parser("summarize")
    s.add_argument("files", nargs="+")
    s.add_argument("--dmon", help="nvidia-smi dmon -s um output to summarise")
    args = ap.parse_args()
    if args.cmd == "torch":
        torch_bench(args)
    elif args.cmd == "compare-weights":
        return compare_weights(args)
    else:
        summarize(args)


if __name__ == "__main__":
    sys.exit(main())
