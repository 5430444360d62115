"""Real `vqclip worker` subprocesses for the tests, their logs, and waiting on the job store."""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from generator import GenerationConfig
from generator.output import KEY_CONFIG
from tests.app.cli_helpers import ROOT

DEADLINE = 240  # seconds; only a guard against hanging, never a timing assertion


def job_config(**overrides) -> dict:
    """A tiny-pair config as a worker receives it: one cheap step unless told otherwise."""
    settings = dict(prompts="research computing team logo", vqgan="tiny", clip="tiny", width=64, height=64,
                    steps=1, seed=1, cutn=2)
    settings.update(overrides)
    return GenerationConfig.from_dict(settings).to_dict()


def png_config(png: bytes) -> dict:
    """The config recorded in a result PNG (and proof that it is a PNG)."""
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (64, 64)
        image.load()
        return GenerationConfig.from_json(image.text[KEY_CONFIG]).to_dict()


class WorkerProcess:
    """One `python -m app.cli worker` process; its stderr goes to a log file."""

    def __init__(self, url: str, log: Path, *args: str):
        self.log_path = log
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        with open(log, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--db", url, "--device", "cpu", "--poll", "0.1",
                 *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        self.id = f"{os.uname().nodename}-{self.proc.pid}"

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def claimed(self) -> list[int]:
        """Ids of the jobs this worker logged as claimed."""
        return [int(n) for n in re.findall(r"job (\d+) claimed", self.log)]

    def wait_ready(self) -> None:
        wait_until(lambda: " ready on " in self.log or self.proc.poll() is not None, "worker ready", self)
        assert self.proc.poll() is None, self.log

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def workers(tmp_path):
    """Starts workers: `workers(url, *args)`; any still running at the end are killed."""
    started: list[WorkerProcess] = []

    def start(url: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(url, tmp_path / f"worker{len(started)}.log", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def wait_until(predicate, what: str, *watched: WorkerProcess, timeout: float = DEADLINE):
    """Poll until predicate() is truthy and return its value; fail with the workers' logs otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    logs = "\n".join(f"--- {w.log_path.name} (exit {w.proc.poll()}):\n{w.log}" for w in watched)
    pytest.fail(f"gave up waiting for {what}\n{logs}")


def claims(*procs: WorkerProcess) -> Counter:
    """How many times each job id was claimed, over all the workers' logs."""
    return Counter(job_id for proc in procs for job_id in proc.claimed())
