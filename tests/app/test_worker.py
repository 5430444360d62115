"""`vqclip worker` as real subprocesses on SQLite and PostgreSQL: pytest tests/app/test_worker.py

Jobs use the tiny model pair with one or two cheap steps; the long jobs that a test interrupts stop only
when it interrupts them or run a few seconds. PostgreSQL comes from tests/services/postgres.sh.
"""
from __future__ import annotations

import signal

import pytest

from app.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, SqlJobStore
from tests.app.worker_helpers import claims, job_config, png_config, wait_until, workers  # noqa: F401


@pytest.fixture
def store(store_url):
    with SqlJobStore(store_url) as store:
        yield store


def running_with_progress(store, job_id):
    job = store.get(job_id)
    return job.state == RUNNING and job.step is not None and job


def all_done(store, ids):
    return all(store.get(i).done for i in ids)


def test_hundred_jobs_through_three_workers_each_run_once(store, store_url, workers):
    configs = [job_config(prompts=f"logo {i}", seed=i, steps=1 + i % 4 // 3) for i in range(100)]
    ids = [store.submit(config) for config in configs]
    procs = [workers(store_url, "--once") for _ in range(3)]
    for proc in procs:
        wait_until(lambda: proc.proc.poll() is not None, "the queue to drain", *procs)
        assert proc.proc.returncode == 0, proc.log
    assert store.counts()[SUCCEEDED] == 100
    for job_id, config in zip(ids, configs):
        job = store.get(job_id)
        assert (job.state, job.attempts, job.step, job.total) == (SUCCEEDED, 0, config["steps"], config["steps"])
        assert png_config(job.result) == config
    assert claims(*procs) == {job_id: 1 for job_id in ids}  # each job claimed exactly once
    assert {job.worker_id for job in store.list(limit=100)} <= {proc.id for proc in procs}


def test_two_workers_race_for_a_job_then_a_kill_9_hands_it_to_the_other(store, store_url, workers):
    procs = [workers(store_url, "--lease", "2") for _ in range(2)]
    for proc in procs:
        proc.wait_ready()  # both are polling the queue when the job arrives
    long_id = store.submit(job_config(prompts="long", steps=40))
    job = wait_until(lambda: running_with_progress(store, long_id), "the job to run", *procs)
    # Exactly one worker got it: the job names it, and one "claimed" line was logged in all.
    (winner,) = [proc for proc in procs if proc.id == job.worker_id]
    (other,) = [proc for proc in procs if proc is not winner]
    assert claims(*procs) == {long_id: 1} and winner.claimed() == [long_id]
    short_ids = [store.submit(job_config(prompts=f"short {i}")) for i in range(2)]
    winner.proc.kill()  # SIGKILL in the middle of the job: nothing gets released
    winner.proc.wait()
    ids = [long_id, *short_ids]
    wait_until(lambda: all_done(store, ids), "every job to end", *procs)
    long = store.get(long_id)
    assert (long.state, long.attempts, long.worker_id, long.step) == (SUCCEEDED, 1, other.id, 40)
    assert png_config(long.result)["prompts"] == "long"
    assert [store.get(i).state for i in short_ids] == [SUCCEEDED, SUCCEEDED]
    assert claims(other) == {job_id: 1 for job_id in ids}
    assert other.stop() == 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_cancel_queued_and_running_jobs(store, store_url, workers):
    running_id = store.submit(job_config(prompts="endless", steps=100_000))
    queued_id = store.submit(job_config(prompts="never run"))
    next_id = store.submit(job_config(prompts="next"))
    worker = workers(store_url)
    wait_until(lambda: running_with_progress(store, running_id), "the first job to run", worker)
    assert store.cancel(queued_id) and store.get(queued_id).state == CANCELLED  # at once, no worker involved
    assert store.cancel(running_id)
    wait_until(lambda: store.get(next_id).state == SUCCEEDED, "the next job to finish", worker)
    stopped = store.get(running_id)
    assert stopped.state == CANCELLED and stopped.result is None and stopped.step < 100_000
    assert f"job {running_id} cancelled at step" in worker.log
    assert queued_id not in worker.claimed()
    assert worker.stop() == 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_invalid_jobs_fail_with_their_message_and_retry_succeeds(store, store_url, workers, tmp_path):
    picture = tmp_path / "start.png"
    bad_type = store.submit({"prompts": "x", "steps": "ten"})
    bad_model = store.submit({**job_config(), "vqgan": "no_such_vqgan"})
    missing_file = store.submit({**job_config(), "init_image": str(picture)})
    good = store.submit(job_config(prompts="good"))
    worker = workers(store_url)
    wait_until(lambda: store.get(good).state == SUCCEEDED, "the good job to finish", worker)
    errors = {i: store.get(i).error for i in (bad_type, bad_model, missing_file)}
    assert all(store.get(i).state == FAILED for i in errors)
    assert errors[bad_type] == "config key 'steps' must be int, got str 'ten'"
    assert errors[bad_model].startswith("unknown VQGAN 'no_such_vqgan'")
    assert errors[missing_file] == f"init image {str(picture)!r} does not exist"
    assert f"job {bad_type} failed: config key 'steps' must be int" in worker.log
    # The user fixes what was wrong and retries: the new job succeeds, the old one stays as history.
    from PIL import Image
    Image.new("RGB", (64, 64), "red").save(picture)
    again = store.retry(missing_file)
    wait_until(lambda: store.get(again).done, "the retried job to end", worker)
    assert store.get(again).state == SUCCEEDED and store.get(missing_file).state == FAILED
    assert worker.stop() == 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sigterm_releases_the_job_to_another_worker_and_exits_zero(store, store_url, workers):
    procs = [workers(store_url) for _ in range(2)]
    for proc in procs:
        proc.wait_ready()
    job_id = store.submit(job_config(prompts="interrupted", steps=30))
    job = wait_until(lambda: running_with_progress(store, job_id), "the job to run", *procs)
    (first,) = [proc for proc in procs if proc.id == job.worker_id]
    (second,) = [proc for proc in procs if proc is not first]
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=120) == 0, first.log
    assert f"job {job_id} released at step" in first.log
    wait_until(lambda: store.get(job_id).done, "the other worker to finish the job", second)
    done = store.get(job_id)
    # attempts 0: the job went back by release, not by its lease running out.
    assert (done.state, done.attempts, done.worker_id, done.step) == (SUCCEEDED, 0, second.id, 30)
    assert second.claimed() == [job_id]
    assert second.stop() == 0


def test_workers_reconnect_after_postgres_restart(pg_store_url, pg_control, workers):
    with SqlJobStore(pg_store_url) as store:
        long_id = store.submit(job_config(prompts="through the outage", steps=60), priority=1)
        ids = [long_id] + [store.submit(job_config(prompts=f"logo {i}", seed=i)) for i in range(15)]
        procs = [workers(pg_store_url) for _ in range(2)]
        # Restart while one worker is inside the long job (the other is starting or taking short ones).
        wait_until(lambda: running_with_progress(store, long_id), "the long job to run", *procs)
        pg_control("restart")
        wait_until(lambda: all_done(store, ids), "the queue to finish", *procs)
        assert store.counts()[SUCCEEDED] == 16
        long = store.get(long_id)
        assert (long.attempts, long.step) == (0, 60)  # its worker kept it through the outage
        assert [png_config(store.get(i).result)["prompts"] for i in ids[1:]] == [f"logo {i}" for i in range(15)]
        assert all(proc.proc.poll() is None for proc in procs)  # they rode out the outage
        assert [proc.stop() for proc in procs] == [0, 0]


def test_out_of_gpu_memory_fails_the_job_and_frees_the_models(tmp_path):
    """The worker's job-running function when the engine runs out of GPU memory mid-step.

    No GPU can be had here, so the engine's own step raises torch.OutOfMemoryError (the exception CUDA
    raises) for the job whose prompt asks for it; everything else (store, models, worker) is real.
    """
    import torch

    from app.worker import OOM_MESSAGE, Worker
    from generator import Generation

    class RunsOutOfMemory(Generation):
        def step(self):
            if self.config.prompts == "too big":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().step()

    with SqlJobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        worker = Worker(store, device="cpu", make_generation=RunsOutOfMemory)
        big = store.submit(job_config(prompts="too big", cutn=2))
        assert worker.run_job(store.claim(worker.id, 60), worker.id) == FAILED
        failed = store.get(big)
        assert failed.state == FAILED
        assert failed.error == OOM_MESSAGE.format(width=64, height=64, cutn=2)
        assert failed.error == "out of GPU memory at 64x64 with 2 cutouts; try a smaller size or fewer cutouts"
        # Clean state: the models were dropped, nothing is running, and the next job runs normally.
        assert worker.models._vqgans == {} and worker.models._clips == {} and not worker._active
        small = store.submit(job_config(prompts="small"))
        assert worker.run_job(store.claim(worker.id, 60), worker.id) == SUCCEEDED
        assert png_config(store.get(small).result)["prompts"] == "small"
        # With several starts, the message names them too.
        starts = store.submit(job_config(prompts="too big", cutn=2, starts=3))
        assert worker.run_job(store.claim(worker.id, 60), worker.id) == FAILED
        assert store.get(starts).error == ("out of GPU memory at 64x64 with 2 cutouts and 3 starts; try a smaller "
                                           "size, fewer cutouts or fewer starts")
