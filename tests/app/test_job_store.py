"""The JobStore contract, run against SQLite and PostgreSQL: pytest tests/app/test_job_store.py

PostgreSQL comes from $VQCLIP_TEST_PG_URL or tests/services/postgres.sh (see tests/conftest.py).
"""
from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
import sqlalchemy as sa

from app.jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobError, SqlJobStore, open_store
from app.jobs.schema import MIGRATIONS, SchemaError

CONFIG = {"prompts": "a red square", "steps": 5}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _expire():
    """Let a lease of 0.05 s run out."""
    time.sleep(0.15)


def _claim_rounds(url, name, barrier, results, rounds):
    """Child process: each round, wait for the parent's job, claim once, report what it got."""
    store = SqlJobStore(url)
    for _ in range(rounds):
        barrier.wait()
        job = store.claim(name, 60)
        results.put((name, job.id if job else None))
    barrier.wait()
    drained = []
    while (job := store.claim(name, 60)) is not None:
        drained.append(job.id)
    results.put((name, drained))
    store.close()


class TestJobStoreContract:
    """What every JobStore must do; `store_url` runs each test on SQLite and on PostgreSQL."""

    @pytest.fixture
    def store(self, store_url):
        with SqlJobStore(store_url) as store:
            yield store

    def test_submit_get_list_position(self, store):
        a = store.submit(CONFIG)
        b = store.submit({"prompts": "b"}, priority=2, owner="ann")
        c = store.submit({"prompts": "c"}, owner="bob", max_attempts=5)
        job = store.get(a)
        assert (job.state, job.config, job.priority, job.owner, job.attempts) == (QUEUED, CONFIG, 0, None, 0)
        assert job.created_at > 0 and job.started_at is None and not job.cancel_requested
        assert store.get(c).max_attempts == 5
        assert store.get(c + 100) is None
        assert [j.id for j in store.list()] == [c, b, a]
        assert [j.id for j in store.list(limit=1, offset=1)] == [b]
        assert [j.id for j in store.list(owner="ann")] == [b]
        assert store.list(state=RUNNING) == []
        assert [store.position(i) for i in (b, a, c)] == [1, 2, 3]
        store.claim("w", 60)
        assert [store.position(i) for i in (b, a, c)] == [None, 1, 2]
        assert store.counts() == {QUEUED: 2, RUNNING: 1, SUCCEEDED: 0, FAILED: 0, CANCELLED: 0}
        assert [j.id for j in store.list(state=RUNNING)] == [b]

    def test_claim_takes_highest_priority_then_oldest(self, store):
        ids = [store.submit({"n": n}, priority=p) for n, p in enumerate([0, 5, 0, 5, -1])]
        claimed = [store.claim("w", 60) for _ in ids]
        assert [j.id for j in claimed] == [ids[1], ids[3], ids[0], ids[2], ids[4]]
        assert all(j.state == RUNNING and j.worker_id == "w" and j.config == {"n": ids.index(j.id)}
                   for j in claimed)
        assert claimed[0].lease_expires_at >= claimed[0].started_at + 59
        assert store.claim("w", 60) is None

    def test_claim_with_match_takes_the_next_job_only_when_it_matches(self, store):
        ids = [store.submit({"size": size}) for size in (64, 64, 128, 64)]
        same_size = lambda config: config["size"] == 64  # noqa: E731
        assert [store.claim("w", 60, match=same_size).id for _ in range(2)] == ids[:2]
        # The next in line does not match: it stays queued, and the later match does not jump the line.
        assert store.claim("w", 60, match=same_size) is None
        assert store.get(ids[2]).state == QUEUED and store.position(ids[3]) == 2
        assert store.claim("w", 60).id == ids[2]
        assert store.claim("w", 60, match=same_size).id == ids[3]
        assert store.claim("w", 60, match=same_size) is None

    def test_racing_threads_claim_each_job_once(self, store_url):
        stores = [SqlJobStore(store_url) for _ in range(3)]
        for _ in range(20):
            job_id = stores[0].submit(CONFIG)
            barrier = threading.Barrier(len(stores))
            got = [None] * len(stores)

            def claim(i):
                barrier.wait()
                got[i] = stores[i].claim(f"t{i}", 60)

            threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [(i, j) for i, j in enumerate(got) if j is not None]
            assert len(winners) == 1 and winners[0][1].id == job_id
            assert stores[0].get(job_id).worker_id == f"t{winners[0][0]}"
        for s in stores:
            s.close()

    def test_opening_a_fresh_database_at_once_migrates_it_once(self, store_url):
        barrier, versions = threading.Barrier(4), []

        def open_store_now():
            barrier.wait()
            with SqlJobStore(store_url) as s:
                versions.append(s.schema_version)

        threads = [threading.Thread(target=open_store_now) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert versions == [1, 1, 1, 1]
        with SqlJobStore(store_url) as s, s.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM schema_version")).scalar() == 1

    def test_racing_processes_claim_each_job_once(self, store):
        ctx = multiprocessing.get_context("spawn")
        workers, rounds = 3, 10
        barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
        procs = [ctx.Process(target=_claim_rounds, args=(str(store.url.render_as_string(False)), f"p{i}",
                                                         barrier, results, rounds)) for i in range(workers)]
        for p in procs:
            p.start()
        try:
            for _ in range(rounds):
                job_id = store.submit(CONFIG)
                barrier.wait(timeout=120)
                got = [results.get(timeout=120) for _ in procs]
                assert sorted(j for _, j in got if j is not None) == [job_id]
                (winner,) = [name for name, j in got if j is not None]
                assert store.get(job_id).worker_id == winner
            batch = [store.submit({"n": n}) for n in range(30)]
            barrier.wait(timeout=120)
            drained = [ids for _, ids in (results.get(timeout=120) for _ in procs)]
            assert sorted(i for ids in drained for i in ids) == batch
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
        assert [p.exitcode for p in procs] == [0] * workers

    def test_expired_lease_requeues_counts_attempts_then_fails(self, store):
        job_id = store.submit(CONFIG, max_attempts=2)
        store.claim("w1", 0.05)
        store.progress(job_id, "w1", 3, 5, 0.5, preview=PNG)
        _expire()
        again = store.claim("w2", 0.05)
        assert (again.id, again.attempts, again.worker_id) == (job_id, 1, "w2")
        assert again.step is None and store.get(job_id).preview is None  # the lost run's progress is gone
        assert not store.renew(job_id, "w1", 60)  # the lost worker learns it must stop
        assert not store.progress(job_id, "w1", 4, 5, 0.4)
        _expire()
        assert store.claim("w3", 60) is None
        job = store.get(job_id)
        assert (job.state, job.attempts, job.error) == (FAILED, 2, "worker lost 2 times (lease expired)")
        assert job.finished_at is not None
        assert not store.finish(job_id, "w2", PNG)

    def test_renew_extends_lease_until_cancel(self, store):
        job_id = store.submit(CONFIG)
        store.claim("w", 0.05)
        assert store.renew(job_id, "w", 60)
        assert store.get(job_id).lease_expires_at > time.time() + 30
        _expire()
        assert store.claim("other", 60) is None  # renewed: not expired
        assert not store.renew(job_id, "other", 60)
        assert store.cancel(job_id)
        assert not store.renew(job_id, "w", 60)

    def test_finish_is_idempotent_and_refuses_stale_worker(self, store):
        job_id = store.submit(CONFIG)
        store.claim("w1", 0.05)
        _expire()
        store.claim("w2", 60)
        assert not store.finish(job_id, "w1", b"stale")
        assert not store.fail(job_id, "w1", "stale")
        assert store.get(job_id).state == RUNNING
        assert store.finish(job_id, "w2", PNG, timelapse=b"mp4")
        assert store.finish(job_id, "w2", b"other bytes")  # repeated: True, nothing rewritten
        assert not store.finish(job_id, "w1", b"stale")
        job = store.get(job_id)
        assert (job.state, job.result, job.timelapse, job.worker_id) == (SUCCEEDED, PNG, b"mp4", "w2")
        assert job.finished_at >= job.started_at and job.lease_expires_at is None
        assert not store.fail(job_id, "w2", "too late")
        assert store.cancel(job_id) is False

    def test_cancel_queued_is_immediate(self, store):
        job_id = store.submit(CONFIG)
        assert store.cancel(job_id)
        job = store.get(job_id)
        assert job.state == CANCELLED and job.finished_at is not None
        assert store.claim("w", 60) is None
        assert not store.cancel(job_id)
        assert not store.cancel(job_id + 1)

    def test_cancel_running_sets_flag_then_worker_marks_cancelled(self, store):
        job_id = store.submit(CONFIG)
        store.claim("w", 60)
        assert store.cancel(job_id)
        job = store.get(job_id)
        assert (job.state, job.cancel_requested) == (RUNNING, True)
        assert not store.renew(job_id, "w", 60)
        assert not store.mark_cancelled(job_id, "someone else")
        assert store.mark_cancelled(job_id, "w")
        assert store.mark_cancelled(job_id, "w")  # idempotent
        assert store.get(job_id).state == CANCELLED

    def test_lost_worker_of_cancelled_job_ends_cancelled(self, store):
        job_id = store.submit(CONFIG)
        store.claim("w", 0.05)
        store.cancel(job_id)
        _expire()
        assert store.claim("w2", 60) is None
        assert store.get(job_id).state == CANCELLED

    def test_release_requeues_without_attempt(self, store):
        first = store.submit(CONFIG)
        second = store.submit(CONFIG)
        store.claim("w", 60)
        store.progress(first, "w", 2, 5, 1.5)
        assert store.release(first, "w")
        assert not store.release(first, "w")
        job = store.get(first)
        assert (job.state, job.attempts, job.worker_id, job.step) == (QUEUED, 0, None, None)
        assert store.position(first) == 1 and store.position(second) == 2
        assert store.claim("w2", 60).id == first
        store.cancel(first)
        assert store.release(first, "w2")
        assert store.get(first).state == CANCELLED

    def test_retry_queues_a_new_job(self, store):
        job_id = store.submit(CONFIG, priority=3, owner="ann", max_attempts=4)
        store.claim("w", 60)
        with pytest.raises(JobError, match="running"):
            store.retry(job_id)
        assert store.fail(job_id, "w", "CUDA out of memory")
        assert store.fail(job_id, "w", "CUDA out of memory")
        assert store.get(job_id).error == "CUDA out of memory"
        new_id = store.retry(job_id)
        new, old = store.get(new_id), store.get(job_id)
        assert new_id != job_id and old.state == FAILED
        assert (new.state, new.config, new.priority, new.owner, new.max_attempts, new.attempts) == \
            (QUEUED, CONFIG, 3, "ann", 4, 0)
        store.cancel(new_id)
        assert store.get(store.retry(new_id)).state == QUEUED
        with pytest.raises(JobError, match="no job"):
            store.retry(10_000)

    def test_progress_and_preview_are_stored(self, store):
        job_id = store.submit(CONFIG)
        store.claim("w", 60)
        assert store.progress(job_id, "w", 3, 10, 0.25, preview=PNG)
        assert store.progress(job_id, "w", 4, 10, 0.125)  # no new preview: keep the last one
        job = store.get(job_id)
        assert (job.step, job.total, job.loss, job.preview) == (4, 10, 0.125, PNG)

    def test_list_leaves_blobs_out(self, store):
        job_id = store.submit(CONFIG)
        store.claim("w", 60)
        store.progress(job_id, "w", 1, 1, 0.0, preview=PNG)
        store.finish(job_id, "w", PNG * 100, timelapse=b"mp4")
        (listed,) = store.list()
        assert (listed.id, listed.state, listed.config) == (job_id, SUCCEEDED, CONFIG)
        assert (listed.preview, listed.result, listed.timelapse) == (None, None, None)
        assert store.get(job_id).result == PNG * 100

    def test_migration_keeps_old_jobs(self, store_url):
        with SqlJobStore(store_url) as v1:
            assert v1.schema_version == 1
            kept = v1.submit(CONFIG, owner="ann")
            v1.claim("w", 60)
            v1.finish(kept, "w", PNG)
            queued = v1.submit({"prompts": "still waiting"})

        def add_note(conn):
            conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN note VARCHAR(40) DEFAULT 'from v1'"))

        with SqlJobStore(store_url, migrations=[*MIGRATIONS, add_note]) as v2:
            assert v2.schema_version == 2
            old = v2.get(kept)
            assert (old.state, old.config, old.owner, old.result) == (SUCCEEDED, CONFIG, "ann", PNG)
            assert v2.claim("w", 60).id == queued
            with v2.engine.connect() as conn:
                assert conn.execute(sa.text("SELECT note FROM jobs WHERE id = :i"), {"i": kept}).scalar() \
                    == "from v1"
        with SqlJobStore(store_url, migrations=[*MIGRATIONS, add_note]) as again:
            assert again.schema_version == 2 and again.get(kept).state == SUCCEEDED  # nothing re-applied
        with pytest.raises(SchemaError, match="newer"):
            SqlJobStore(store_url)


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path):
    with SqlJobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_open_store_defaults_to_sqlite_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_DATA_DIR", str(tmp_path / "data"))
    with open_store() as store:
        store.submit(CONFIG)
    assert (tmp_path / "data" / "jobs.db").is_file()


def test_store_survives_postgres_restart(pg_store_url, pg_control):
    with SqlJobStore(pg_store_url) as store:
        job_id = store.submit(CONFIG)
        pg_control("restart")
        assert store.get(job_id).state == QUEUED  # pooled connections died; pre-ping replaced them
        assert store.claim("w", 60).id == job_id
        pg_control("stop")
        later = threading.Timer(1.0, pg_control, args=("start",))
        later.start()
        try:
            assert store.progress(job_id, "w", 1, 5, 0.5)  # retried until the server is back
        finally:
            later.join()
        assert store.finish(job_id, "w", PNG) and store.get(job_id).result == PNG
