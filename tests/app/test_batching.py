"""`vqclip worker --batch N` as real subprocesses: pytest tests/app/test_batching.py

Batched jobs must end as they would alone: the images are compared with the same configs run alone in this
process, within the tolerance of tests/generator/test_batch.py.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, SqlJobStore
from generator import Generation, GenerationConfig
from tests.app.worker_helpers import job_config, wait_until, workers  # noqa: F401

PIXEL_ATOL = 2  # grey levels; see tests/generator/test_batch.py


@pytest.fixture
def store(store_url):
    with SqlJobStore(store_url) as store:
        yield store


def assert_as_alone(job, models):
    """The job's result is the image its config makes when run alone."""
    alone = Generation(GenerationConfig.from_dict(job.config), device="cpu", models=models).run()
    with Image.open(io.BytesIO(job.result)) as result:
        diff = np.abs(np.asarray(result.convert("RGB")).astype(int) - np.asarray(alone).astype(int))
    assert diff.max() <= PIXEL_ATOL, (job.id, diff.max())


def test_compatible_jobs_run_as_one_batch_with_the_images_they_get_alone(store, store_url, workers, models):
    configs = [job_config(prompts=f"logo {i}", seed=i, steps=3 + i, lr=0.1 * (i + 1)) for i in range(4)]
    ids = [store.submit(config) for config in configs]
    other_size = store.submit(job_config(prompts="small", width=32, height=32))  # cannot join them
    worker = workers(store_url, "--batch", "4", "--once")
    wait_until(lambda: worker.proc.poll() is not None, "the queue to drain", worker)
    assert worker.proc.returncode == 0, worker.log
    for n, job_id in enumerate(ids, 1):
        assert f"job {job_id} claimed into a batch of {n}" in worker.log
    assert f"job {other_size} claimed into a batch of 1" in worker.log  # after the batch, alone
    for job_id, config in zip(ids, configs):
        job = store.get(job_id)
        assert (job.state, job.step, job.total) == (SUCCEEDED, config["steps"], config["steps"]), worker.log
        assert_as_alone(job, models)
    assert store.get(other_size).state == SUCCEEDED


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_jobs_join_a_running_batch_and_leave_it_without_disturbing_the_others(store, store_url, workers,
                                                                            models, tmp_path):
    endless = store.submit(job_config(prompts="endless", steps=100_000))
    worker = workers(store_url, "--batch", "4")
    wait_until(lambda: store.get(endless).step, "the first job to run", worker)
    not_an_image = tmp_path / "prompt.png"
    not_an_image.write_bytes(b"not an image")
    broken = store.submit(job_config(prompts="", image_prompts=[str(not_an_image)]))  # fails while joining
    joiners = [store.submit(job_config(prompts=f"joiner {i}", seed=10 + i, steps=40)) for i in range(2)]
    wait_until(lambda: all(store.get(i).state == RUNNING and store.get(i).step for i in joiners),
               "the joiners to run", worker)
    assert store.cancel(endless)
    wait_until(lambda: all(store.get(i).done for i in [endless, broken, *joiners]), "every job to end", worker)
    stopped = store.get(endless)
    assert stopped.state == CANCELLED and stopped.result is None and stopped.step < 100_000
    assert store.get(broken).state == FAILED and "cannot read image" in store.get(broken).error
    for job_id in joiners:
        job = store.get(job_id)
        assert (job.state, job.step) == (SUCCEEDED, 40), worker.log
        assert_as_alone(job, models)
    assert f"job {joiners[1]} claimed into a batch of 3" in worker.log  # beside the endless job and joiner 0
    assert worker.stop() == 0


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sigterm_releases_every_job_of_the_batch(store, store_url, workers):
    ids = [store.submit(job_config(prompts=f"long {i}", seed=i, steps=100_000)) for i in range(2)]
    worker = workers(store_url, "--batch", "2")
    wait_until(lambda: all(store.get(i).step for i in ids), "both jobs to run", worker)
    assert worker.stop() == 0, worker.log
    for job_id in ids:
        assert f"job {job_id} released at step" in worker.log
        job = store.get(job_id)
        assert (job.state, job.attempts, job.worker_id) == ("queued", 0, None)


def test_out_of_gpu_memory_in_a_batched_step_fails_its_jobs_and_frees_the_models(tmp_path):
    """The worker's batch when the engine runs out of GPU memory inside a batched step (raised on purpose
    here, as in test_worker.py's single-job test): every job in the step fails, saying so."""
    import torch

    from app.worker import Worker

    class RunsOutOfMemory(Generation):
        def _cutouts(self, image):
            if self.config.prompts == "too big":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super()._cutouts(image)

    with SqlJobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        ids = [store.submit(job_config(prompts=p, steps=2)) for p in ("fine", "too big")]
        worker = Worker(store, device="cpu", batch=2, once=True, make_generation=RunsOutOfMemory)
        worker.run()
        for job_id in ids:
            job = store.get(job_id)
            assert job.state == FAILED
            assert job.error == ("out of GPU memory at 64x64 with 2 cutouts; try a smaller size or fewer cutouts "
                                 "(it ran in a batch of 2; a worker with a smaller --batch needs less)")
        assert worker.models._vqgans == {} and not worker._active
        after = store.submit(job_config(prompts="after"))
        worker.run()  # the same worker, models loaded afresh
        assert store.get(after).state == SUCCEEDED
