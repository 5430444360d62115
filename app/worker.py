"""The worker: claims jobs from the queue and runs them on one device until it is stopped.

    vqclip worker --db postgresql://vqclip:pw@db-host/vqclip --device cuda:0

One `Worker` per process keeps one `ModelCache`, so consecutive jobs reuse loaded models. `--concurrency N`
runs N jobs at once as N threads of this process: they share the cache (one copy of each model on the
device) and the store. `--batch N` makes each slot run up to N compatible jobs as one batch of the engine
(app/batching.py). While a job runs, a heartbeat thread renews its lease about once a second (also
while models load, which can take minutes on first use); a renewal that fails means the job was cancelled
or taken over, and the engine's cancel flag stops it before its next step. Progress and a PNG preview are
written on the first step, then at most every PROGRESS_SECONDS, and on the last step.

`stop()` (the CLI calls it on SIGTERM/SIGINT) lets each running job finish its current step, hands it back
to the queue with `release` and lets `run()` return.
"""
from __future__ import annotations

import functools
import gc
import math
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from app.jobs import CANCELLED, FAILED, SUCCEEDED, Job, JobStore
from generator.errors import ConfigError, VqclipError

PROGRESS_SECONDS = 2.0  # write progress and a preview at most this often (plus the first and last step)
RELEASED = "released"  # outcome of a job handed back to the queue on shutdown
OOM_MESSAGE = "out of GPU memory at {width}x{height} with {cutn} cutouts; try a smaller size or fewer cutouts"
OOM_STARTS_MESSAGE = ("out of GPU memory at {width}x{height} with {cutn} cutouts and {starts} starts; try a smaller "
                      "size, fewer cutouts or fewer starts")


@dataclass
class Outcome:
    state: str  # SUCCEEDED, FAILED, CANCELLED or RELEASED
    message: str = ""  # why it failed
    result: bytes | None = None  # final PNG with metadata
    timelapse: bytes | None = None  # MP4, when the config asks for video
    step: int = 0  # steps done


class Lease:
    """Renews a job's lease from a thread every `interval` seconds; `revoke` (or a refused renewal: the
    job was cancelled or another worker took it over) calls the registered stop callbacks once."""

    def __init__(self, store: JobStore, job_id: int, worker_id: str, seconds: float, interval: float,
                 log: Callable[[str], None]):
        self.store, self.job_id, self.worker_id = store, job_id, worker_id
        self.seconds, self.interval, self.log = seconds, interval, log
        self.revoked = False
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def on_revoke(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            revoked = self.revoked
        if revoked:
            callback()

    def revoke(self) -> None:
        with self._lock:
            if self.revoked:
                return
            self.revoked = True
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                held = self.store.renew(self.job_id, self.worker_id, self.seconds)
            except Exception as exc:  # the store is unreachable beyond its own retries; try again next beat
                self.log(f"lease renewal failed: {exc}")
                continue
            if not held:
                self.revoke()
                return


class Worker:
    """Claims and runs jobs from `store` on `device`.

    Args:
        store: the job queue.
        device: auto, cpu or cuda:N.
        concurrency: jobs run at once, as threads sharing the models.
        batch: jobs each slot runs as one batch (app.batching): compatible queued jobs join it.
        lease: seconds a claim lasts without renewal; a dead worker's job is run again after this.
        poll: seconds between claims while the queue is empty.
        max_jobs: exit after claiming this many jobs (None: no limit).
        once: exit as soon as the queue is empty.
        worker_id: the name recorded on claimed jobs (default host-pid; slots of N>1 add /1../N).
        make_generation: builds the engine's Generation (tests pass one that fails on purpose).
    """

    def __init__(self, store: JobStore, device: str = "auto", concurrency: int = 1, lease: float = 60.0,
                 poll: float = 1.0, max_jobs: int | None = None, once: bool = False,
                 worker_id: str | None = None, make_generation: Callable[..., Any] | None = None,
                 batch: int = 1):
        from generator import Generation, ModelCache

        if concurrency < 1 or batch < 1 or lease <= 0 or poll <= 0:
            raise ConfigError("concurrency, batch, lease and poll must be positive")
        self.store = store
        self.models = ModelCache(device)
        self.device = self.models.device
        self.concurrency, self.batch, self.lease, self.poll = concurrency, batch, lease, poll
        self.heartbeat = min(1.0, lease / 4)
        self.max_jobs, self.once = max_jobs, once
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        # A worker runs job after job at the same shapes, so compile="auto" compiles on a GPU.
        self.make_generation = make_generation or functools.partial(Generation, expected_steps=math.inf)
        self.stopping = threading.Event()
        self._lock = threading.Lock()  # guards the job counter and the active set
        self._loading = threading.Lock()
        self._claimed = 0
        self._active: set[Any] = set()  # running Generations, cancelled by stop()
        self._log_lock = threading.Lock()

    # -- running ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Work until stopped, out of jobs (once) or at max_jobs; returns when every slot is done."""
        self.log(self.id, f"ready on {self.device}, {self.concurrency} slot(s) of up to {self.batch} job(s), "
                          f"lease {self.lease:g}s, queue {getattr(self.store, 'url', self.store)}")
        names = [self.id] if self.concurrency == 1 else [f"{self.id}/{i}" for i in range(1, self.concurrency + 1)]
        slots = [threading.Thread(target=self._slot, args=(name,), name=name) for name in names]
        for slot in slots:
            slot.start()
        for slot in slots:
            while slot.is_alive():
                slot.join(0.2)  # a timed join lets the main thread run signal handlers
        self.log(self.id, f"stopped after {self._claimed} job(s)")

    def stop(self) -> None:
        """Finish the current steps, release the running jobs and return from run()."""
        self.stopping.set()
        with self._lock:
            running = list(self._active)
        for gen in running:
            gen.cancel()

    def _slot(self, who: str) -> None:
        while not self.stopping.is_set() and self.take_ticket():
            try:
                job = self.store.claim(who, self.lease)
            except Exception as exc:  # the store stayed unreachable through its retries
                self.return_ticket()
                self.log(who, f"cannot claim: {exc}; retrying")
                self.stopping.wait(self.poll)
                continue
            if job is None:
                self.return_ticket()
                if self.once:
                    return
                self.stopping.wait(self.poll)
                continue
            if self.batch > 1:
                from app.batching import BatchRun

                BatchRun(self, who).run(job)
            else:
                self.run_job(job, who)

    def take_ticket(self) -> bool:
        with self._lock:
            if self.max_jobs is not None and self._claimed >= self.max_jobs:
                return False
            self._claimed += 1
            return True

    def return_ticket(self) -> None:
        with self._lock:
            self._claimed -= 1

    # -- one job -----------------------------------------------------------------------------------------

    def run_job(self, job: Job, who: str) -> str:
        """Run a job this worker has claimed and record how it ended; returns the outcome's state."""
        started = time.monotonic()
        self.log(who, f"job {job.id} claimed: {_describe(job.config)}")
        out_of_memory = False
        with Lease(self.store, job.id, who, self.lease, self.heartbeat,
                   lambda text: self.log(who, f"job {job.id}: {text}")) as lease:
            try:
                outcome = self._generate(job, who, lease)
            except Exception as exc:
                out_of_memory = is_out_of_memory(exc)
                outcome = Outcome(FAILED, failure_message(exc, job.config, out_of_memory))
        if out_of_memory:
            self.free_models()
        return self.conclude(job, who, outcome, started)

    def free_models(self) -> None:
        """After running out of GPU memory: the failed run's tensors are unreachable now; drop the models
        too so the next job starts from an empty device (other slots keep theirs until their jobs end)."""
        gc.collect()
        with self._loading:
            self.models.clear()

    def conclude(self, job: Job, who: str, outcome: Outcome, started: float) -> str:
        """Record how a job ended and log it; returns the outcome's state."""
        try:
            event = self._record(job, who, outcome, time.monotonic() - started)
        except Exception as exc:
            event = f"could not record its outcome ({exc}); its lease will expire and it will run again"
        self.log(who, f"job {job.id} {event}")
        return outcome.state

    def build(self, job: Job) -> Any:
        """The job's Generation: its config read and checked, its models loaded once per worker."""
        from generator import GenerationConfig

        config = GenerationConfig.from_dict(job.config)
        if config.video and not config.save_every:
            raise ConfigError("video needs frames: set save_every (e.g. 10)")
        with self._loading:  # one slot loads a model while the others wait for it, then share it
            return self.make_generation(config, device=self.device, models=self.models)

    def _generate(self, job: Job, who: str, lease: Lease) -> Outcome:
        """Stages: 1. build the run; 2. step, reporting progress and stopping on cancel or shutdown;
        3. encode the result."""
        gen = self.build(job)
        self.watch(gen, lease)
        try:
            last_report, step = -float("inf"), None
            for step in gen:
                now = time.monotonic()
                if step.index in (1, step.total) or now - last_report >= PROGRESS_SECONDS:
                    last_report = now
                    self.report(job, who, step, lease)
            return self.outcome(gen, step, lease)
        finally:
            self.unwatch(gen)

    def watch(self, gen: Any, lease: Lease) -> None:
        """Cancel `gen` when its lease is revoked or the worker stops."""
        with self._lock:
            self._active.add(gen)
        lease.on_revoke(gen.cancel)
        if self.stopping.is_set():
            gen.cancel()

    def unwatch(self, gen: Any) -> None:
        with self._lock:
            self._active.discard(gen)

    def outcome(self, gen: Any, step: Any, lease: Lease) -> Outcome:
        """How a run that stopped stepping ended: finished (with its PNG), cancelled or released."""
        from generator.output import metadata, png_bytes

        if gen.step_index < gen.config.steps:
            return Outcome(CANCELLED if lease.revoked else RELEASED, step=gen.step_index)
        # The last step's image is the final one, already decoded for the last preview.
        result = png_bytes(step.image() if step else gen.image(), metadata(gen))
        return Outcome(SUCCEEDED, result=result, timelapse=_video(gen) if gen.config.video else None,
                       step=gen.step_index)

    def report(self, job: Job, who: str, step: Any, lease: Lease) -> None:
        """Write progress and a preview; a refusal (the job was cancelled or lost) revokes the lease."""
        from generator.output import png_bytes

        try:
            held = self.store.progress(job.id, who, step.index, step.total, step.loss,
                                       preview=png_bytes(step.image(), {}))
        except Exception as exc:  # progress is best effort; the job goes on
            self.log(who, f"job {job.id}: progress not written: {exc}")
            return
        if not held:
            lease.revoke()

    def _record(self, job: Job, who: str, outcome: Outcome, seconds: float) -> str:
        """Write the outcome to the store; the log line's text."""
        store, total = self.store, job.config.get("steps", "?")
        if outcome.state == SUCCEEDED:
            if store.finish(job.id, who, outcome.result, outcome.timelapse):
                return f"finished in {seconds:.1f}s"
            return "finished, but another worker holds it now; result dropped"
        if outcome.state == FAILED:
            if store.fail(job.id, who, outcome.message):
                return f"failed: {outcome.message}"
            return f"failed ({outcome.message}), but another worker holds it now"
        if outcome.state == CANCELLED:
            if store.mark_cancelled(job.id, who):
                return f"cancelled at step {outcome.step}/{total}"
            return f"lost at step {outcome.step}/{total}: another worker holds it now"
        if store.release(job.id, who):
            return f"released at step {outcome.step}/{total}, back in the queue"
        return "released, but it was no longer held"

    def log(self, who: str, text: str) -> None:
        with self._log_lock:
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} worker {who}: {text}", file=sys.stderr, flush=True)


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    from generator import GenerationConfig

    return {**GenerationConfig().to_dict(), **config}


def _describe(config: dict[str, Any]) -> str:
    c = _with_defaults(config)
    return f"{str(c['prompts'])[:60]!r}, {c['width']}x{c['height']}, {c['steps']} steps, {c['cutn']} cutouts"


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    kinds = tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError})
    return isinstance(exc, kinds)


def failure_message(exc: BaseException, config: dict[str, Any], out_of_memory: bool) -> str:
    """What the user reads about a failed job."""
    if out_of_memory:
        settings = _with_defaults(config)
        return (OOM_STARTS_MESSAGE if settings["starts"] > 1 else OOM_MESSAGE).format(**settings)
    if isinstance(exc, VqclipError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _video(gen: Any) -> bytes:
    from generator.output import save_video

    with tempfile.TemporaryDirectory(prefix="vqclip-video-") as folder:
        return save_video(gen.frames, Path(folder) / "timelapse.mp4").read_bytes()
