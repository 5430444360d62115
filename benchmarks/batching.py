"""Jobs per hour: K jobs run one at a time against the same K jobs run as one batch, in the same run.

    .venv/bin/python benchmarks/batching.py --tiny                                   # the tiny pair, a minute
    .venv/bin/python benchmarks/batching.py --size 128 128 --cutn 16 --steps 2       # full-size, random weights
    .venv/bin/python benchmarks/batching.py --device cuda --size 256 256 --cutn 32 --jobs 8 --steps 20

The K jobs differ in prompt, seed and learning rate and share the models, size and cutouts, as the worker's
`--batch` needs. Each timing covers what a worker does per job after the models are loaded: build the
`Generation` (encode its prompts), run every step, decode the final image. One-at-a-time and batched
rounds alternate, so that drift in machine load hits both; the figures are medians over the rounds. Full
size uses the random-init architectures of benchmarks/fullsize.py (weights do not change the timing).
Each round also checks that batching did not change the results: the largest loss difference between a
job run alone and batched is printed.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

# The repository root instead of this folder, whose queue.py would shadow the standard library's.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import torch  # noqa: E402

from benchmarks import roofline  # noqa: E402
from benchmarks.step import (NotebookStep, add_compile_options, apply_compile_options, machine,  # noqa: E402
                             models_for, profile)
from generator import Generation, GenerationConfig  # noqa: E402
from generator.batch import GenerationBatch  # noqa: E402

WORKER = float("inf")  # the jobs run as in a worker, which compiles (compile="auto") on a GPU
PROMPTS = ["a watercolour painting of a lighthouse at dawn", "a red fox logo, flat vector", "a city at night",
           "an origami crane", "a bowl of fruit, oil painting", "a neon sign saying HELLO", "a mountain lake",
           "a robot reading a book"]


def job_configs(base: GenerationConfig, jobs: int) -> list[GenerationConfig]:
    return [base.replace(prompts=PROMPTS[i % len(PROMPTS)], seed=i, lr=0.05 * (1 + i % 3)) for i in range(jobs)]


def one_at_a_time(configs, device, cache) -> list[Generation]:
    gens = []
    for config in configs:
        gen = Generation(config, device=device, models=cache, expected_steps=WORKER)
        gen.run()
        gen.image()
        gens.append(gen)
    return gens


def batched(configs, device, cache) -> list[Generation]:
    gens = [Generation(config, device=device, models=cache, expected_steps=WORKER) for config in configs]
    GenerationBatch(gens).run()
    for gen in gens:
        gen.image()
    return gens


def timed(fn, device):
    """(wall seconds, CPU seconds of this process, result) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="the tiny test pair instead of full-size models")
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), default=None, help="default 256 256 (tiny: 64 64)")
    p.add_argument("--cutn", type=int, default=None, help="cutouts per step (default 32, tiny: 8)")
    p.add_argument("--jobs", type=int, default=4, help="jobs K, run alone and as one batch of K (default 4)")
    p.add_argument("--steps", type=int, default=None, help="steps per job (default 10, tiny: 30)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of each (default 3)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16, fp16 (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    add_compile_options(p)
    p.add_argument("--roofline", action="store_true",
                   help="also print the steps per second of each way as a fraction of the device's matrix-product "
                        "peak (benchmarks/roofline.py)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N steps of the K jobs batched (torch.profiler, as benchmarks/step.py --profile)")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.rounds < 1 or (args.steps is not None and args.steps < 1):
        p.error("--jobs, --rounds and --steps must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    apply_compile_options(args)
    width, height = args.size or ((64, 64) if args.tiny else (256, 256))
    cutn = args.cutn or (8 if args.tiny else 32)
    steps = args.steps or (30 if args.tiny else 10)
    device = torch.device(args.device)

    cache, vqgan_name, clip_name = models_for(args, device)
    base = GenerationConfig(prompts=PROMPTS[0], vqgan=vqgan_name, clip=clip_name, width=width, height=height,
                            cutn=cutn, steps=steps, precision=args.precision)
    configs = job_configs(base, args.jobs)
    print(f"batching benchmark {datetime.date.today()}: {vqgan_name} + {clip_name}, {width}x{height}, {cutn} "
          f"cutouts, {args.jobs} jobs of {steps} steps, device {device}, precision {args.precision}")
    print(f"machine: {machine(device)}", flush=True)
    # Warm-up (untimed): one step of one job alone and of all K batched, so both paths have run (and, on a
    # GPU, compiled) at the shapes the rounds use.
    warm = [c.replace(steps=1) for c in configs]
    one_at_a_time(warm[:1], device, cache)
    batched(warm, device, cache)

    runs = {"one at a time": one_at_a_time, "batched": batched}
    walls = {name: [] for name in runs}
    cpus = {name: [] for name in runs}
    for i in range(args.rounds):
        results = {}
        for name, fn in runs.items():
            seconds, cpu, results[name] = timed(lambda: fn(configs, device, cache), device)
            walls[name].append(seconds)
            cpus[name].append(cpu)
            print(f"  round {i + 1} {name:14s} {seconds:9.2f} s  cpu {cpu:9.2f} s  "
                  f"{args.jobs / seconds * 3600:10.0f} jobs/h", flush=True)
        drift = max(abs(a - b) for x, y in zip(results["one at a time"], results["batched"])
                    for a, b in zip(x.loss_history, y.loss_history))
        print(f"  round {i + 1} largest loss difference alone vs batched: {drift:.2e}")
    print(f"{'':14s} {'median s':>9s} {'cpu s':>9s} {'jobs/h':>10s}")
    rate = {}
    for name in runs:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        rate[name] = args.jobs / wall * 3600
        print(f"{name:14s} {wall:9.2f} {cpu:9.2f} {rate[name]:10.0f}")
    if args.roofline:
        clip = cache.clips(clip_name)[0][0]
        notebook = NotebookStep(cache.vqgan(vqgan_name), clip, clip.encode_text([PROMPTS[0]]), width, height, cutn)
        work, peak = roofline.step_flops(notebook.step), roofline.matmul_peak(device)
        for name in runs:
            print(f"{name}: {roofline.describe(steps * rate[name] / 3600, work, peak)} (steps of all jobs)")
    if args.profile:
        gens = [Generation(c.replace(steps=10 ** 6), device=device, models=cache, expected_steps=WORKER)
                for c in configs]
        batch = GenerationBatch(gens)
        profile(lambda: [r.loss for r in batch.step().values()], args.profile, device,
                f"steps of {args.jobs} jobs batched")
    pairs = [a / b for a, b in zip(walls["one at a time"], walls["batched"])]
    print(f"batched / one at a time: {rate['batched'] / rate['one at a time']:.2f}x jobs/hour (ratio of medians), "
          f"{statistics.median(pairs):.2f}x (median of paired rounds); cpu "
          f"{statistics.median(cpus['one at a time']) / statistics.median(cpus['batched']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
