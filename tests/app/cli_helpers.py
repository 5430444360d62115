"""Run the real `vqclip` command line in a subprocess."""
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--vqgan", "tiny", "--clip", "tiny", "--size", "64", "64", "--cutn", "8", "--device", "cpu"]


def vqclip(*args, timeout=300, env=None, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=kwargs.pop("cwd", ROOT), **kwargs)


def _interruptible() -> None:
    """In the child before exec: SIGINT back to its default, so Python turns it into KeyboardInterrupt as in
    a terminal. A test run started in the background of a shell inherits SIGINT ignored, and Python leaves
    an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(*args, env=None, **kwargs) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "app.cli", *map(str, args)], env=full_env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible, **kwargs)
