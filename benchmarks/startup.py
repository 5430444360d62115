"""Start-up: seconds from launching `vqclip generate` to its first optimisation step (tiny models).

    .venv/bin/python benchmarks/startup.py              # 5 runs, medians
    .venv/bin/python benchmarks/startup.py --runs 3

Each run is a fresh `python -m app.cli generate ...` process, timed from just before it is launched. Inside
it, Generation is wrapped (before the command line runs) to note when construction starts and ends and
when the first step starts and ends, so the figures split into imports + argument parsing, model loading
and set-up, and the first step. Also lists what `import app.cli` and the `generate` path import that is
known to be slow (gradio, torch._dynamo, torchvision.ops) to show they stay off the path.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["generate", "a red circle", "--vqgan", "tiny", "--clip", "tiny", "--size", "64", "64", "--cutn", "8",
        "--steps", "1", "--device", "cpu"]

CHILD = r"""
import json, os, sys, time
t0 = float(os.environ["STARTUP_T0"])
marks = {"python_up": time.time() - t0}
sys.argv = ["vqclip", *json.loads(os.environ["STARTUP_ARGS"])]
import app.cli
marks["cli_imported"] = time.time() - t0
import generator.engine as engine
marks["engine_imported"] = time.time() - t0
init, step = engine.Generation.__init__, engine.Generation.step

def timed_init(self, *a, **k):
    marks.setdefault("setup_start", time.time() - t0)
    init(self, *a, **k)
    marks.setdefault("setup_end", time.time() - t0)

def timed_step(self):
    marks.setdefault("first_step_start", time.time() - t0)
    record = step(self)
    marks.setdefault("first_step_end", time.time() - t0)
    return record

engine.Generation.__init__, engine.Generation.step = timed_init, timed_step
code = app.cli.main()
mods = sys.modules
marks["loaded"] = {m: m in mods for m in ("gradio", "torch._dynamo", "torchvision.ops")}
print("STARTUP " + json.dumps(marks), file=sys.stderr)
sys.exit(code)
"""


def one_run(out: str) -> dict:
    env = {**os.environ, "STARTUP_T0": repr(time.time()), "STARTUP_ARGS": json.dumps([*ARGS, "--out", out])}
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True)
    line = next((l for l in result.stderr.splitlines() if l.startswith("STARTUP ")), None)
    if result.returncode != 0 or line is None:
        raise SystemExit(f"run failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(line[len("STARTUP "):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="fresh processes to time (default 5)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        runs = [one_run(out) for _ in range(args.runs)]
    print(f"vqclip {' '.join(ARGS[:2])!r} ... (tiny models, {args.runs} fresh processes), seconds since launch, "
          f"medians [min-max]; load average {os.getloadavg()[0]:.1f}")
    for key in ("python_up", "cli_imported", "engine_imported", "setup_start", "setup_end",
                "first_step_start", "first_step_end"):
        values = [r[key] for r in runs]
        print(f"  {key:18s} {statistics.median(values):6.2f}  [{min(values):.2f}-{max(values):.2f}]")
    print(f"  modules loaded by the end: {runs[-1]['loaded']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
