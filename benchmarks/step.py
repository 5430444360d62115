"""Time one optimisation step of the engine against the canonical notebook step, in the same run.

    .venv/bin/python benchmarks/step.py --size 256 256 --cutn 32            # full-size, random weights
    .venv/bin/python benchmarks/step.py --tiny                              # the tiny pair, seconds
    .venv/bin/python benchmarks/step.py --device cuda --size 256 256 --cutn 32 --precision bf16

Both run on the same architectures (taming f16_16384 VQGAN, open_clip ViT-B/32 with quick_gelu) with
seeded random weights: weights do not change the timing, so nothing is downloaded. Engine and baseline
steps alternate so that drift in machine load hits both; the figures are medians after warm-up. Peak
memory is the step's peak over the memory before it: CPU resident set size sampled every 2 ms, or CUDA's
max_memory_allocated.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

# The repository root instead of this folder, whose queue.py would shadow the standard library's.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks import roofline  # noqa: E402
from generator import Generation, GenerationConfig, acceleration  # noqa: E402
from generator.models import ModelCache  # noqa: E402

PROMPT = "a watercolour painting of a lighthouse at dawn"


def add_compile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile-mode", default=None,
                   choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile's mode for the engine on CUDA (default: the engine's own, acceleration.MODE)")
    p.add_argument("--compile-scope", default=None, choices=("step", "parts"),
                   help="what the engine compiles: a one-start step as one function, or the decoder, CLIP tower and "
                        "cutouts apart (default: the engine's own, acceleration.SCOPE)")


def apply_compile_options(args: argparse.Namespace) -> None:
    """Set the engine's compile mode and scope from --compile-mode and --compile-scope, when given
    ("default": inductor's own mode)."""
    if args.compile_mode:
        acceleration.MODE = None if args.compile_mode == "default" else args.compile_mode
    if args.compile_scope:
        acceleration.SCOPE = args.compile_scope


# ---- the baseline: the notebook's step, written plainly ------------------------------------------
class NotebookStep:
    """Crowson's notebook loop: Python loop of cutouts with adaptive average pooling, float32, no fusion."""

    def __init__(self, vqgan, clip, text_embed, width, height, cutn, cut_pow=1.0, lr=0.1, seed=0):
        self.vqgan, self.clip, self.text_embed = vqgan, clip, text_embed
        self.cutn, self.cut_pow, self.cut_size = cutn, cut_pow, clip.input_size
        self.mean, self.std = clip.mean, clip.std
        codebook = vqgan.codebook
        torch.manual_seed(seed)
        factor = vqgan.config.factor
        toksx, toksy = width // factor, height // factor
        one_hot = F.one_hot(torch.randint(codebook.shape[0], [toksy * toksx], device=codebook.device),
                            codebook.shape[0]).float()
        self.z = (one_hot @ codebook).view(1, toksy, toksx, -1).permute(0, 3, 1, 2).requires_grad_(True)
        self.z_min = codebook.min(0).values[None, :, None, None]
        self.z_max = codebook.max(0).values[None, :, None, None]
        self.opt = torch.optim.Adam([self.z], lr=lr)

    def vector_quantize(self, x, codebook):
        d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
        x_q = F.one_hot(d.argmin(-1), codebook.shape[0]).to(d.dtype) @ codebook
        return x + (x_q - x).detach()

    def synth(self):
        z_q = self.vector_quantize(self.z.movedim(1, 3), self.vqgan.codebook).movedim(3, 1)
        return self.vqgan.decode(z_q).add(1).div(2).clamp(0, 1)

    def make_cutouts(self, image):
        side_y, side_x = image.shape[2:4]
        max_size = min(side_x, side_y)
        min_size = min(side_x, side_y, self.cut_size)
        cutouts = []
        for _ in range(self.cutn):
            size = int(torch.rand([]) ** self.cut_pow * (max_size - min_size) + min_size)
            offsetx = torch.randint(0, side_x - size + 1, ())
            offsety = torch.randint(0, side_y - size + 1, ())
            cutout = image[:, :, offsety:offsety + size, offsetx:offsetx + size]
            cutouts.append(F.adaptive_avg_pool2d(cutout, self.cut_size))
        return torch.cat(cutouts)

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        cutouts = (self.make_cutouts(self.synth()) - self.mean) / self.std
        embeds = self.clip.model.encode_image(cutouts).float()
        a = F.normalize(embeds, dim=1).unsqueeze(1)
        b = F.normalize(self.text_embed, dim=1).unsqueeze(0)
        loss = (a - b).norm(dim=2).div(2).arcsin().pow(2).mul(2).mean()
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.z.copy_(self.z.maximum(self.z_min).minimum(self.z_max))
        return loss


# ---- measuring --------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory of a block over the memory before it: CUDA allocator, or RSS sampled on the CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        _release_freed_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        self.start = self.top = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.top = max(self.top, self._rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.top, self._rss()) - self.start


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc), so the RSS before a step is not the last step's peak."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def timed(fn, device):
    """(wall seconds, CPU seconds of this process, peak bytes) of one call."""
    with PeakMemory(device) as mem:
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu, mem.peak


def pipelined(gen: Generation, steps: int, device: torch.device) -> float:
    """Seconds for `steps` engine steps with no host sync between them (losses read at the end)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    records = [gen.step() for _ in range(steps)]
    [r.loss for r in records]
    return time.perf_counter() - start


def profile(step, steps: int, device: torch.device, what: str = "steps") -> None:
    """Profile `steps` calls of `step` (one engine step, or one step of a batch, its losses read): wall and
    device-busy time per call, then the operations that take the most device time and host time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    step()  # nothing left to compile or record inside the profile
    with torch_profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    busy = _busy_seconds([e.time_range for e in prof.events() if e.device_type == DeviceType.CUDA])
    print(f"profile of {steps} {what}: wall {wall / steps * 1e3:.2f} ms each, device busy "
          f"{busy / steps * 1e3:.2f} ms each ({busy / wall:.0%} of the wall time)")
    if device.type == "cuda":
        print(events.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=70))
    print(events.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=70))


def _busy_seconds(ranges) -> float:
    """Seconds covered by the union of the profiler's time ranges (microseconds)."""
    busy, end = 0.0, float("-inf")
    for r in sorted(ranges, key=lambda r: r.start):
        if r.end > end:
            busy += r.end - max(r.start, end)
            end = r.end
    return busy / 1e6


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = platform.processor() or "cpu"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from generator.precision import cpu_has_native_bf16
    return (f"{model}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, native bf16: "
            f"{cpu_has_native_bf16()}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")


def models_for(args, device) -> tuple[ModelCache, str, str]:
    if args.tiny:
        return ModelCache(device), "tiny", "tiny"
    from benchmarks.fullsize import FULL_CLIP, FULL_VQGAN, fullsize_cache
    return fullsize_cache(device), FULL_VQGAN, FULL_CLIP


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), default=None, help="default 256 256 (tiny: 64 64)")
    p.add_argument("--cutn", type=int, default=None, help="cutouts per step (default 32, tiny: 8)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--precision", default="auto", help="the engine's precision: auto, fp32, bf16, fp16 (default auto)")
    p.add_argument("--checkpoint-decoder", action="store_true", help="the engine checkpoints the decoder")
    p.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                   help="the engine's torch.compile (auto: on a GPU only); compiling happens in the warm-up")
    add_compile_options(p)
    p.add_argument("--roofline", action="store_true",
                   help="also count one step's FLOPs and measure the device's bf16 matrix-product peak, and print "
                        "the engine's step rate as a fraction of that peak")
    p.add_argument("--pipelined", type=int, default=0, metavar="N",
                   help="also time N engine steps back to back, reading their losses only at the end (the device's "
                        "own rate, once the host runs ahead of it)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N engine steps (torch.profiler): device busy time per step and the top "
                        "operations by device and by host time")
    p.add_argument("--repeats", type=int, default=3, help="timed steps of each, alternating (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of each first (default 1)")
    p.add_argument("--no-baseline", action="store_true", help="time the engine only (memory runs)")
    p.add_argument("--tiny", action="store_true", help="the tiny test pair instead of full-size models")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice). On a shared machine, --threads 1 makes the "
                        "CPU seconds a measure of the work itself, free of other processes' load")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    apply_compile_options(args)
    width, height = args.size or ((64, 64) if args.tiny else (256, 256))
    cutn = args.cutn or (8 if args.tiny else 32)
    device = torch.device(args.device)

    cache, vqgan_name, clip_name = models_for(args, device)
    config = GenerationConfig(prompts=PROMPT, vqgan=vqgan_name, clip=clip_name, width=width, height=height,
                              cutn=cutn, steps=10 ** 6, precision=args.precision,
                              checkpoint_decoder=args.checkpoint_decoder, compile=args.compile)
    gen = Generation(config, device=str(device), models=cache)
    runs = {"engine": lambda: gen.step().loss}  # reading the loss is what every front end does
    baseline = None
    if not args.no_baseline or args.roofline:
        # Its own copies, so nothing the engine does to its models (layouts, casts) reaches the baseline.
        vqgan = copy.deepcopy(gen.vqgan)
        clip = copy.deepcopy(gen.clips[0][0])
        baseline = NotebookStep(vqgan, clip, clip.encode_text([PROMPT]), width, height, cutn, lr=config.lr)
    if not args.no_baseline:
        runs["baseline"] = baseline.step
    print(f"step benchmark {datetime.date.today()}: {vqgan_name} + {clip_name}, {width}x{height}, {cutn} cutouts, "
          f"device {device}, engine precision {gen.precision}, compiled {gen.compiled}"
          f"{f' (mode {acceleration.MODE})' if gen.compiled and acceleration.MODE else ''}"
          f"{', checkpointed decoder' if args.checkpoint_decoder else ''}")
    print(f"machine: {machine(device)}", flush=True)
    if args.roofline:
        work, device_peak = roofline.step_flops(baseline.step), roofline.matmul_peak(device)
        print(f"one step's work {work / 1e9:.1f} GFLOP; the device's matrix-product peak {device_peak / 1e12:.2f} TFLOP/s",
              flush=True)
        if args.no_baseline:
            del baseline, vqgan, clip

    times = {name: [] for name in runs}
    cpus = {name: [] for name in runs}
    peaks = {name: [] for name in runs}
    for i in range(args.warmup + args.repeats):
        for name, fn in runs.items():
            seconds, cpu, peak = timed(fn, device)
            if i >= args.warmup:
                times[name].append(seconds)
                cpus[name].append(cpu)
            peaks[name].append(peak)  # warm-up included: the first step's peak is the real one
            print(f"  {'warm-up' if i < args.warmup else 'run'} {i + 1} {name:8s} {seconds:8.3f} s  "
                  f"cpu {cpu:8.3f} s  peak +{peak / 2 ** 20:7.0f} MiB", flush=True)
    med = {name: (statistics.median(times[name]), statistics.median(cpus[name])) for name in runs}
    print(f"{'':10s} {'median s':>10s} {'min s':>8s} {'cpu s':>8s} {'peak MiB':>9s}")
    for name in runs:
        print(f"{name:10s} {med[name][0]:10.3f} {min(times[name]):8.3f} {med[name][1]:8.3f} "
              f"{max(peaks[name]) / 2 ** 20:9.0f}")
    if "baseline" in runs:
        pairs = [e / b for e, b in zip(times["engine"], times["baseline"])]
        print(f"engine / baseline: wall {med['engine'][0] / med['baseline'][0]:.3f} (ratio of medians), "
              f"{statistics.median(pairs):.3f} (median of paired ratios); "
              f"cpu {med['engine'][1] / med['baseline'][1]:.3f}; "
              f"speed-up {med['baseline'][0] / med['engine'][0]:.2f}x")
    if args.roofline:
        print(f"engine: {roofline.describe(1 / med['engine'][0], work, device_peak)}")
    if args.pipelined:
        seconds = pipelined(gen, args.pipelined, device)
        print(f"engine pipelined: {args.pipelined} steps in {seconds:.3f} s, "
              f"{seconds / args.pipelined * 1e3:.2f} ms a step"
              + (f"; {roofline.describe(args.pipelined / seconds, work, device_peak)}" if args.roofline else ""))
    if args.profile:
        profile(lambda: gen.step().loss, args.profile, device)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; engine compiled at the end: {gen.compiled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
