"""One `vqclip worker` child process, started again when it dies: what `vqclip serve` runs beside the UI.

    supervisor = WorkerSupervisor("sqlite:///data/jobs.db", device="auto")
    supervisor.start()      # a thread starts the child and watches it
    supervisor.stop()       # SIGTERM (the worker puts its job back in the queue), SIGKILL after a grace period

A child that keeps dying is restarted after a growing pause (1 s doubling to 60 s; back to 1 s once a child
has lived a minute), so a broken environment does not spin the CPU.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class WorkerSupervisor:
    """Keeps one worker child alive from a thread.

    Args:
        db: the job queue URL the worker drains.
        device: auto, cpu or cuda:N.
        grace: seconds the worker gets to hand its job back on stop before it is killed.
        extra: more `vqclip worker` arguments.
    """

    def __init__(self, db: str, device: str = "auto", grace: float = 30.0, extra: tuple[str, ...] = ()):
        self.command = [sys.executable, "-m", "app.cli", "worker", "--db", db, "--device", device, *extra]
        self.grace = grace
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        # The worker writes its log to our stderr; its own process group keeps a terminal's Ctrl-C away
        # from it, so that stop() decides when it ends.
        return subprocess.Popen(self.command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def _watch(self) -> None:
        pause = 1.0
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                self.proc = self._spawn()
            began = time.monotonic()
            _log(f"worker started (pid {self.proc.pid})")
            code = self.proc.wait()
            if self._stopping.is_set():
                return
            pause = 1.0 if time.monotonic() - began > 60 else min(pause * 2, 60.0)
            self.restarts += 1
            _log(f"worker exited with status {code}; restarting in {pause:g} s")
            self._stopping.wait(pause)

    def stop(self) -> None:
        """Stop watching, then SIGTERM the worker and wait for it (SIGKILL after `grace` seconds)."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                _log("worker did not stop in time; killing it")
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)


def _log(text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} serve: {text}", file=sys.stderr, flush=True)
