"""Job queue figures: submit-to-claim latency and no-op jobs/s with 1 and 4 worker processes, on SQLite and
PostgreSQL. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/queue.py [--jobs 400] [--backends sqlite,postgresql]

PostgreSQL: $VQCLIP_TEST_PG_URL, else the server of tests/services/postgres.sh (started if needed). Each run
uses a fresh SQLite file / PostgreSQL schema, dropped afterwards.
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `queue`, which multiprocessing imports: run as a script,
# its folder must not shadow it. The repository root goes there instead, for `app`.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

import argparse
import multiprocessing
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager

import sqlalchemy as sa

from app.jobs import SqlJobStore

POLL_SECONDS = 0.01  # how long an idle worker sleeps between claims in the latency run


def _latency_worker(url, out):
    """Claim as soon as a job appears; report (submit-to-claim seconds, time spent inside claim)."""
    store = SqlJobStore(url)
    while True:
        t0 = time.time()
        job = store.claim("lat", 60)
        t1 = time.time()
        if job is None:
            time.sleep(POLL_SECONDS)
            continue
        store.finish(job.id, "lat", b"x")
        if job.config.get("stop"):
            break
        out.put((t1 - job.config["submitted"], t1 - t0))
    store.close()


def _drain_worker(url, name, barrier, out):
    """Claim and finish no-op jobs until none are left; report (count, end time)."""
    store = SqlJobStore(url)
    barrier.wait()
    done = 0
    while (job := store.claim(name, 60)) is not None:
        store.finish(job.id, name, b"x")
        done += 1
    out.put((done, time.time()))
    store.close()


def latency(url: str, n: int) -> tuple[list[float], list[float]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    worker = ctx.Process(target=_latency_worker, args=(url, out))
    worker.start()
    with SqlJobStore(url) as store:
        time.sleep(2)  # let the worker start polling
        for _ in range(n):
            store.submit({"submitted": time.time()})
            time.sleep(0.03)
        store.submit({"stop": True})
        results = [out.get(timeout=60) for _ in range(n)]
    worker.join()
    return [r[0] for r in results], [r[1] for r in results]


def throughput(url: str, n: int, workers: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    with SqlJobStore(url) as store:
        for i in range(n):
            store.submit({"n": i})
    procs = [ctx.Process(target=_drain_worker, args=(url, f"w{i}", barrier, out)) for i in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.time()
    reports = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    if sum(done for done, _ in reports) != n:
        print(f"warning: {n} jobs but {sum(done for done, _ in reports)} done", file=sys.stderr)
    return n / (max(end for _, end in reports) - start)


@contextmanager
def fresh_database(backend: str, pg_url: str | None):
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/jobs.db"
        return
    base = sa.make_url(pg_url)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def postgres_url() -> str:
    if os.environ.get("VQCLIP_TEST_PG_URL"):
        return os.environ["VQCLIP_TEST_PG_URL"]
    script = ROOT / "tests" / "services" / "postgres.sh"
    return subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True).stdout.split()[-1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400, help="no-op jobs per throughput run")
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    backends = args.backends.split(",")
    pg_url = postgres_url() if "postgresql" in backends else None
    print(f"python {sys.version.split()[0]}, sqlalchemy {sa.__version__}, {os.cpu_count()} CPUs; "
          f"latency: {args.latency_jobs} jobs, one worker polling every {ms(POLL_SECONDS)}; "
          f"throughput: {args.jobs} no-op jobs (claim + finish)")
    print(f"{'backend':<11} {'submit->claim p50':>18} {'p95':>9} {'claim() p50':>12} "
          f"{'1 worker':>13} {'4 workers':>13}")
    for backend in backends:
        with fresh_database(backend, pg_url) as url:
            waits, calls = latency(url, args.latency_jobs)
        rates = []
        for workers in (1, 4):
            with fresh_database(backend, pg_url) as url:
                rates.append(throughput(url, args.jobs, workers))
        p95 = statistics.quantiles(waits, n=20)[-1]
        print(f"{backend:<11} {ms(statistics.median(waits)):>18} {ms(p95):>9} "
              f"{ms(statistics.median(calls)):>12} {rates[0]:>8.0f} job/s {rates[1]:>8.0f} job/s")


if __name__ == "__main__":
    main()
