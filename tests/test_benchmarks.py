"""The benchmark scripts run (on the tiny pair, seconds): a GPU lease is too short to find a broken one."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_step_benchmark_times_engine_and_baseline_and_profiles():
    out = run("benchmarks/step.py", "--tiny", "--warmup", "0", "--repeats", "1", "--pipelined", "2", "--profile", "1",
              "--compile-scope", "parts")
    assert "engine / baseline: wall" in out
    assert "engine pipelined: 2 steps in" in out
    assert "profile of 1 steps: wall" in out and "aten::" in out  # the profile's table of operations


def test_batching_benchmark_compares_and_profiles():
    out = run("benchmarks/batching.py", "--tiny", "--steps", "1", "--jobs", "2", "--rounds", "1", "--profile", "1")
    assert "largest loss difference alone vs batched" in out
    assert "batched / one at a time:" in out
    assert "profile of 1 steps of 2 jobs batched" in out


def test_gpu_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")], check=True)
