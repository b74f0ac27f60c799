#!/usr/bin/env python3
"""How close `repro status`'s time left comes to the time actually left.

Starts `repro run FILE --smoke --set train.epochs=EPOCHS` into a fresh folder, runs `repro
status` on it once a second while it trains, and compares each reading's time left (of the
run in training, and of all runs) with the time that was actually left: when the run's `DONE`
was written, and when the last run's was. Prints every reading, then per kind the share of
readings within 20 % among those with at least 2 s left. The README's numbers come from
`python3 tools/status_eta_check.py /tmp/eta` (fig23, 200 epochs). Standard library only.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import time


def seconds(text):
    """`duration_text` read back: "0.4 s", "45 s", "12 min 30 s", "2 h 05 min"."""
    for pattern, scale in [
        (r"([\d.]+) s", (1,)),
        (r"(\d+) min (\d+) s", (60, 1)),
        (r"(\d+) h (\d+) min", (3600, 60)),
    ]:
        m = re.fullmatch(pattern, text)
        if m:
            return sum(float(g) * s for g, s in zip(m.groups(), scale))
    raise ValueError(text)


RUNNING = re.compile(
    r"(\S+)\s+training: .*; step ([\d,]+) of ([\d,]+) \(\d+ %\), ([\d.]+) steps/s, about (.+?) left"
)
ALL = re.compile(r"all runs: about (.+?) left")


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", help="a folder for the results (created)")
    p.add_argument("--file", default=os.path.join(here, "experiments/fig23.yaml"))
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument(
        "--repro",
        default=os.path.join(
            os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "target")), "release/repro"
        ),
    )
    a = p.parse_args()
    flags = ["--smoke", "--set", f"train.epochs={a.epochs}", "--results", f"{a.work}/results"]
    os.makedirs(a.work, exist_ok=True)
    t0 = time.time()
    with open(f"{a.work}/run.log", "w") as log:
        run = subprocess.Popen(
            [a.repro, "run", a.file, *flags, "--reports", f"{a.work}/reports"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        readings = []
        while run.poll() is None:
            t = time.time()
            out = subprocess.run(
                [a.repro, "status", a.file, *flags], capture_output=True, text=True
            ).stdout
            for line in out.splitlines():
                if m := RUNNING.match(line.strip()):
                    readings.append(
                        dict(t=t - t0, kind="run", run=m.group(1),
                             step=int(m.group(2).replace(",", "")), eta=seconds(m.group(5)))
                    )
                elif m := ALL.match(line.strip()):
                    readings.append(dict(t=t - t0, kind="all", run="all", eta=seconds(m.group(1))))
            time.sleep(max(0.0, 1.0 - (time.time() - t)))
    done = {
        os.path.basename(d.rstrip("/")).rsplit("-", 1)[0]: os.path.getmtime(d + "DONE") - t0
        for d in glob.glob(f"{a.work}/results/runs/*/")
    }
    end = max(done.values())
    json.dump(dict(readings=readings, done=done), open(f"{a.work}/readings.json", "w"), indent=1)
    print("runs done at (s after the start):", {k: round(v, 1) for k, v in done.items()})
    for kind in ["run", "all"]:
        rows = []
        for r in (r for r in readings if r["kind"] == kind):
            actual = (done[r["run"]] if kind == "run" else end) - r["t"]
            if actual > 0:
                rows.append((r, actual, (r["eta"] - actual) / actual))
        print(f"\n{kind}: seconds after the start, run, step, time left said, actually left, error")
        for r, actual, err in rows:
            print(f"  {r['t']:6.1f} {r['run']:<20} {r.get('step', ''):>5} {r['eta']:7.1f} {actual:7.1f} {100 * err:+6.1f} %")
        errs = sorted(abs(e) for _, actual, e in rows if actual >= 2.0)
        if errs:
            print(f"  with >= 2 s left: {len(errs)} readings, median |error| {100 * errs[len(errs) // 2]:.1f} %, "
                  f"within 20 %: {sum(e <= 0.2 for e in errs)} ({100 * sum(e <= 0.2 for e in errs) / len(errs):.0f} %)")


if __name__ == "__main__":
    main()
