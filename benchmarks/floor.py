"""How fast could a float32 step be on this machine? Counts the floating-point work of one engine step and
one baseline step (torch's FlopCounterMode: matrix products and convolutions, forward and backward), and
measures this machine's float32 ceiling (MKL's sgemm on large square matrices, the fastest kernel it has)
with the same threads. The floor is the engine's work at that ceiling; it is set against the baseline's
measured step in the same run.

    .venv/bin/python benchmarks/floor.py --threads 1                 # full-size, 256x256, 32 cutouts

CPU seconds (process time) are used throughout, so with --threads 1 other processes' load does not count.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.step import PROMPT, NotebookStep, machine, models_for  # noqa: E402
from generator import Generation, GenerationConfig  # noqa: E402


def flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def sgemm_ceiling(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP per CPU second of MKL's matrix product at n x n (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return max(2 * n ** 3 / cpu_seconds(lambda: a @ b) for _ in range(repeats))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), default=(256, 256))
    p.add_argument("--cutn", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="timed baseline steps (default 2)")
    p.add_argument("--tiny", action="store_true", help="the tiny pair (a quick check of the script)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = args.size if not args.tiny else (64, 64)
    cutn = args.cutn if not args.tiny else 8
    cache, vqgan_name, clip_name = models_for(args, torch.device("cpu"))
    config = GenerationConfig(prompts=PROMPT, vqgan=vqgan_name, clip=clip_name, width=width, height=height,
                              cutn=cutn, steps=10 ** 6, precision="fp32", compile="off")
    gen = Generation(config, device="cpu", models=cache)
    clip = copy.deepcopy(gen.clips[0][0])
    baseline = NotebookStep(copy.deepcopy(gen.vqgan), clip, clip.encode_text([PROMPT]), width, height, cutn,
                            lr=config.lr)
    print(f"floor {vqgan_name} + {clip_name}, {width}x{height}, {cutn} cutouts; machine: {machine(torch.device('cpu'))}",
          flush=True)
    engine_flops = flops(lambda: gen.step().loss)
    baseline_flops = flops(baseline.step)
    ceiling = sgemm_ceiling()
    baseline.step()  # warm-up
    base_s = statistics.median(cpu_seconds(baseline.step) for _ in range(args.repeats))
    floor = engine_flops / ceiling
    print(f"work per step: engine {engine_flops / 1e9:.0f} GFLOP, baseline {baseline_flops / 1e9:.0f} GFLOP")
    print(f"float32 ceiling (sgemm {args.threads} thread(s)): {ceiling / 1e9:.1f} GFLOP per CPU second")
    print(f"baseline step: {base_s:.2f} CPU s ({baseline_flops / base_s / 1e9:.1f} GFLOP/s, "
          f"{baseline_flops / base_s / ceiling:.0%} of the ceiling)")
    print(f"engine floor at the ceiling: {floor:.2f} CPU s = {floor / base_s:.2f}x the baseline's step "
          f"(the bar, 0.5x, is {base_s / 2:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
