"""`vqclip submit`, `vqclip jobs ...` and `vqclip batch --db`, run as real subprocesses against a SQLite
queue served by one real worker process."""
from __future__ import annotations

import pytest

from app.jobs import CANCELLED, QUEUED, RUNNING, SUCCEEDED, SqlJobStore
from generator.output import read_png_config
from tests.app.cli_helpers import vqclip
from tests.app.worker_helpers import WorkerProcess, job_config, wait_until

TINY = ["--vqgan", "tiny", "--clip", "tiny", "--size", "64", "64", "--cutn", "2"]


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    """(db URL, store, worker) shared by the module's tests."""
    folder = tmp_path_factory.mktemp("queue")
    url = f"sqlite:///{folder / 'jobs.db'}"
    with SqlJobStore(url) as store:
        worker = WorkerProcess(url, folder / "worker.log")
        yield url, store, worker
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def test_submit_wait_prints_the_id_then_the_png(queue, tmp_path):
    url, store, _ = queue
    result = vqclip("submit", "a red square", *TINY, "--steps", 3, "--db", url, "--wait", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    job_id, path = result.stdout.split()
    assert store.get(int(job_id)).state == SUCCEEDED
    assert "3/3" in result.stderr  # the progress bar reached the end
    config = read_png_config(path)
    assert (config.prompts, config.steps, config.vqgan) == ("a red square", 3, "tiny")
    assert path.startswith(str(tmp_path))


def test_submit_wait_reports_a_failed_job(queue, tmp_path):
    url, store, _ = queue
    result = vqclip("submit", "x", *TINY, "--vqgan", "no_such_vqgan", "--db", url, "--wait", "--out", tmp_path)
    assert result.returncode == 1
    job_id = int(result.stdout.split()[0])
    assert f"job {job_id} failed: unknown VQGAN 'no_such_vqgan'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_submit_rejects_bad_input_before_queueing(queue):
    url, store, _ = queue
    before = sum(store.counts().values())
    for args, message in [(["", *TINY], "the prompt is empty"), (["a cat:heavy", *TINY], "weight 'heavy'"),
                          (["x", *TINY, "--steps", "0"], "steps must be positive")]:
        result = vqclip("submit", *args, "--db", url)
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert sum(store.counts().values()) == before


def test_jobs_list_show_cancel_retry_export(queue, tmp_path):
    url, store, worker = queue

    def jobs(*args):
        return vqclip("jobs", *args, "--db", url)

    endless = store.submit(job_config(prompts="endless", steps=100_000))
    later = store.submit(job_config(prompts="a small one", steps=2), priority=-1)
    wait_until(lambda: store.get(endless).state == RUNNING, "the endless job to run", worker)
    assert store.get(later).state == QUEUED

    result = jobs("cancel", later)
    assert (result.returncode, result.stdout.strip()) == (0, f"job {later} cancelled")
    result = jobs("cancel", endless)
    assert result.returncode == 0 and "cancel requested" in result.stdout
    wait_until(lambda: store.get(endless).state == CANCELLED, "the running job to stop", worker)
    result = jobs("cancel", endless)
    assert result.returncode == 2 and f"job {endless} is already cancelled" in result.stderr

    result = jobs("retry", later)
    assert result.returncode == 0, result.stderr
    again = int(result.stdout)
    wait_until(lambda: store.get(again).state == SUCCEEDED, "the retried job to finish", worker)

    listing = jobs("list").stdout.splitlines()
    rows = {int(line.split()[0]): line.split()[1] for line in listing[1:]}
    assert {endless: CANCELLED, later: CANCELLED, again: SUCCEEDED}.items() <= rows.items()
    assert all(line.split()[1] == CANCELLED for line in jobs("list", "--state", "cancelled").stdout.splitlines()[1:])
    shown = jobs("show", again).stdout
    assert "succeeded" in shown and "a small one" in shown and "bytes PNG" in shown

    out = tmp_path / "sub" / "small.png"
    result = jobs("export", again, out)
    assert result.returncode == 0 and result.stdout.strip() == str(out)
    assert read_png_config(out).prompts == "a small one"
    result = jobs("export", endless, tmp_path / "none.png")
    assert result.returncode == 2 and f"job {endless} has no result: it was cancelled" in result.stderr
    assert not (tmp_path / "none.png").exists()
    result = jobs("show", 99999)
    assert result.returncode == 2 and "no job 99999" in result.stderr


def test_batch_db_submits_the_good_lines_and_reports_the_bad(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# logos\na red square\ncat:heavy\n\na blue circle\n")
    result = vqclip("batch", "--db", url, prompts, *TINY, "--steps", 2)
    assert result.returncode == 1
    assert f"{prompts}:3" in result.stderr and "weight 'heavy' is not a number" in result.stderr
    assert "2 submitted, 1 bad" in result.stderr
    with SqlJobStore(url) as store:
        queued = store.list()
    assert sorted(int(i) for i in result.stdout.split()) == sorted(job.id for job in queued)
    assert sorted(job.config["prompts"] for job in queued) == ["a blue circle", "a red square"]
    assert all(job.state == QUEUED and job.config["steps"] == 2 for job in queued)


def test_plain_postgresql_urls_use_psycopg(pg_store_url):
    plain = pg_store_url.replace("postgresql+psycopg://", "postgresql://")
    with SqlJobStore(pg_store_url) as store:
        job_id = store.submit(job_config(prompts="over plain postgresql"))
    result = vqclip("jobs", "show", job_id, "--db", plain)
    assert result.returncode == 0, result.stderr
    assert "over plain postgresql" in result.stdout and "queued (#1 in line)" in result.stdout


def test_submit_names_the_words_the_shapes_demo_was_never_taught_and_queues_the_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"  # no worker: the jobs stay queued
    one = vqclip("submit", "a purple dog", "--vqgan", "shapes", "--clip", "shapes", "--db", url)
    assert one.returncode == 0, one.stderr
    assert "The Shapes demo was never taught 'dog'" in one.stderr
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na castle in the fog\n")
    batch = vqclip("batch", prompts, "--vqgan", "shapes", "--clip", "shapes", "--db", url)
    assert batch.returncode == 0, batch.stderr
    assert "never taught 'castle', 'fog'" in batch.stderr and batch.stderr.count("never taught") == 1
    with SqlJobStore(url) as store:
        assert sorted(j.config["prompts"] for j in store.list() if j.state == QUEUED) == [
            "a castle in the fog", "a purple dog", "a red square"]
