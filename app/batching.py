"""Cross-job batching in the worker: compatible queued jobs run as one `generator.batch.GenerationBatch`.

    vqclip worker --batch 4

A slot that claims a job starts a batch with it; while the batch has room, the next job in line joins it
between steps when it can share the batch's passes (`generator.batch.batch_key`: same models, size,
cutouts and precision). A job never jumps the line: when the next job cannot join, it waits for a worker
with room for it (or for this batch to empty). Each job keeps everything a job run alone has: its own
lease and heartbeat, progress and previews, cancel, and finish/fail/release. A job that finishes, is
cancelled or fails while being set up leaves the batch and the others go on; an error inside a batched
step (out of GPU memory, say) fails every job in that step, since they shared it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from app.jobs import FAILED, Job
from app.worker import PROGRESS_SECONDS, Lease, Outcome, Worker, failure_message, is_out_of_memory


@dataclass
class _Member:
    """One job of the batch and what its worker keeps for it."""

    job: Job
    lease: Lease
    gen: Any
    started: float
    last_report: float = -float("inf")
    step: Any = None  # its latest StepRecord


class BatchRun:
    """One slot's batch, from its first job until the last member leaves."""

    def __init__(self, worker: Worker, who: str):
        from generator.batch import GenerationBatch

        self.worker, self.who = worker, who
        self.batch = GenerationBatch()
        self.members: list[_Member] = []
        self.key: tuple | None = None  # batch_key of the members; set by the first one
        self.last_claim = -float("inf")

    def run(self, first: Job) -> None:
        """Stages, per step: 1. let compatible queued jobs join; 2. one batched step; 3. report progress;
        4. conclude the jobs that finished or were cancelled."""
        self.admit(first)
        while self.members:
            self.fill()
            try:
                records = self.batch.step()
            except Exception as exc:
                self.fail_all(exc)
                return
            now = time.monotonic()
            for member in self.members:
                step = records.get(member.gen)
                if step is None:
                    continue
                member.step = step
                if step.index in (1, step.total) or now - member.last_report >= PROGRESS_SECONDS:
                    member.last_report = now
                    self.worker.report(member.job, self.who, step, member.lease)
            for member in list(self.members):
                gen = member.gen
                if gen.cancelled or gen.step_index >= gen.config.steps:
                    self.leave(member, self.worker.outcome(gen, member.step, member.lease))

    # -- joining ---------------------------------------------------------------------------------------

    def fill(self) -> None:
        """Claim the next queued jobs while there is room and they fit (at most every `poll` seconds)."""
        worker = self.worker
        if len(self.members) >= worker.batch or worker.stopping.is_set() or not self.batch.has_room():
            return
        if time.monotonic() - self.last_claim < worker.poll:
            return
        self.last_claim = time.monotonic()
        while (len(self.members) < worker.batch and not worker.stopping.is_set() and self.batch.has_room()
               and worker.take_ticket()):
            try:
                job = worker.store.claim(self.who, worker.lease, match=self.fits)
            except Exception as exc:  # the store is unreachable beyond its retries; the batch goes on
                worker.return_ticket()
                worker.log(self.who, f"cannot claim: {exc}")
                return
            if job is None:
                worker.return_ticket()
                return
            self.admit(job)

    def fits(self, config: dict[str, Any]) -> bool:
        """Whether a queued job's config can join this batch (a config that does not load does not)."""
        from generator import GenerationConfig
        from generator.batch import batch_key

        try:
            return batch_key(GenerationConfig.from_dict(config)) == self.key
        except Exception:
            return False

    def admit(self, job: Job) -> None:
        """Set up a claimed job and add it to the batch; a job that cannot be set up fails alone."""
        from generator.batch import batch_key

        worker, started = self.worker, time.monotonic()
        worker.log(self.who, f"job {job.id} claimed into a batch of {len(self.members) + 1}")
        lease = Lease(worker.store, job.id, self.who, worker.lease, worker.heartbeat,
                      lambda text: worker.log(self.who, f"job {job.id}: {text}")).__enter__()
        try:
            gen = worker.build(job)
            self.batch.add(gen)
        except Exception as exc:
            lease.__exit__(None, None, None)
            worker.conclude(job, self.who, Outcome(FAILED, failure_message(exc, job.config, False)), started)
            return
        self.key = self.key or batch_key(gen.config)
        worker.watch(gen, lease)
        self.members.append(_Member(job, lease, gen, started))

    # -- leaving ---------------------------------------------------------------------------------------

    def leave(self, member: _Member, outcome: Outcome) -> None:
        """The job leaves the batch: its lease stops, its outcome is recorded; the others go on."""
        self.members.remove(member)
        self.batch.remove(member.gen)
        self.worker.unwatch(member.gen)
        member.lease.__exit__(None, None, None)
        self.worker.conclude(member.job, self.who, outcome, member.started)

    def fail_all(self, exc: Exception) -> None:
        """A batched step raised: every job in it fails with the error."""
        out_of_memory, size = is_out_of_memory(exc), len(self.members)
        for member in list(self.members):
            message = failure_message(exc, member.job.config, out_of_memory)
            if out_of_memory and size > 1:
                message += f" (it ran in a batch of {size}; a worker with a smaller --batch needs less)"
            self.leave(member, Outcome(FAILED, message))
        if out_of_memory:
            self.worker.free_models()
