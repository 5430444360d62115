"""The queue's command line: `vqclip submit`, `vqclip jobs ...`, `vqclip worker`, and `batch --db`.

    vqclip worker --db postgresql://vqclip:pw@db-host/vqclip --device cuda:0 &
    vqclip submit "a red circle" --db postgresql://vqclip:pw@db-host/vqclip --wait
    vqclip jobs list --state running

Without --db every command uses the embedded SQLite queue (data/jobs.db, or $VQCLIP_DATA_DIR/jobs.db).
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import time
from pathlib import Path

from app.jobs import CANCELLED, FAILED, STATES, SUCCEEDED, JobError, JobStore

WAIT_POLL_SECONDS = 0.5


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", default=None,
                   help="job queue: sqlite:///path/jobs.db or postgresql://user:pw@host/db "
                        "(default: the embedded SQLite queue)")


def open_db(url: str | None) -> JobStore:
    """The job store, with a one-line error when it cannot be opened."""
    import sqlalchemy as sa

    from app.jobs import normalise_url, open_store

    try:
        return open_store(url)
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.make_url(normalise_url(url)).render_as_string(hide_password=True) if url else "jobs.db"
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise JobError(f"cannot open the job database {shown}: {reason}") from None


# -- submit ----------------------------------------------------------------------------------------------

def cmd_submit(args: argparse.Namespace) -> int:
    from app.cli_generate import advise, check_out_dir, config_from_args

    config = advise(config_from_args(args, args.prompt))
    out = check_out_dir(args.out) if args.wait else None
    with open_db(args.db) as store:
        job_id = store.submit(config.to_dict(), priority=args.priority)
        print(job_id, flush=True)
        return wait_for(store, job_id, out) if args.wait else 0


def wait_for(store: JobStore, job_id: int, out: Path) -> int:
    """Show the job's progress until it ends; save its outputs in `out` and print the PNG's path."""
    from tqdm import tqdm

    job = store.get(job_id)
    bar = tqdm(total=job.config.get("steps"), desc=f"job {job_id}", unit="step", file=sys.stderr,
               dynamic_ncols=True)
    try:
        while not job.done:
            if job.step is None:
                position = store.position(job_id)
                bar.set_description(f"job {job_id} queued" + (f" (#{position})" if position else ""))
            else:
                bar.set_description(f"job {job_id}")
                bar.set_postfix(loss=f"{job.loss:.4f}" if job.loss is not None else "?", refresh=False)
                bar.update(job.step - bar.n)
            time.sleep(WAIT_POLL_SECONDS)
            job = store.get(job_id)
        if job.state == SUCCEEDED:
            bar.update(bar.total - bar.n)
    except KeyboardInterrupt:
        bar.close()
        print(f"vqclip: stopped waiting; job {job_id} stays in the queue (vqclip jobs show {job_id})",
              file=sys.stderr)
        return 130
    bar.close()
    if job.state != SUCCEEDED:
        print(f"vqclip: job {job_id} {_ending(job)}", file=sys.stderr)
        return 1
    print(save_result(job, out))
    return 0


def save_result(job, out: Path) -> Path:
    """Write a finished job's PNG (and timelapse) into `out` under the name `generate` would use."""
    from generator import GenerationConfig
    from generator.output import atomic_write, output_name

    stem = output_name(GenerationConfig.from_dict(job.config))
    if job.timelapse:
        atomic_write(out / f"{stem}.mp4", job.timelapse)
    return atomic_write(out / f"{stem}.png", job.result)


def submit_batch(args: argparse.Namespace) -> int:
    """`vqclip batch --db URL prompts.txt`: queue one job per good line; report the bad ones."""
    from app.cli_generate import advise, config_from_args, read_prompt_file
    from generator.errors import VqclipError

    prompts = read_prompt_file(args.prompt_file)
    configs, bad = [], []
    for line_no, prompt in prompts:
        try:
            configs.append(advise(config_from_args(args, prompt)))
        except VqclipError as exc:
            print(f"vqclip: {args.prompt_file}:{line_no}: {exc}", file=sys.stderr)
            bad.append(f"{args.prompt_file}:{line_no}")
    with open_db(args.db) as store:
        for config in configs:
            print(store.submit(config.to_dict(), priority=args.priority), flush=True)
    print(f"batch: {len(configs)} submitted, {len(bad)} bad" + (f" ({', '.join(bad)})" if bad else ""),
          file=sys.stderr)
    return 1 if bad else 0


# -- jobs ------------------------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    with open_db(args.db) as store:
        found = store.list(state=args.state, limit=args.limit)
    print(f"{'ID':>6}  {'STATE':<9}  {'PRI':>3}  {'STEP':>11}  {'CREATED':<19}  PROMPT")
    for job in found:
        step = f"{job.step}/{job.total}" if job.step is not None else "-"
        prompt = str(job.config.get("prompts", ""))
        print(f"{job.id:>6}  {job.state:<9}  {job.priority:>3}  {step:>11}  {_when(job.created_at):<19}  "
              f"{prompt[:60] + ('...' if len(prompt) > 60 else '')}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import json

    with open_db(args.db) as store:
        job = _get(store, args.id)
        position = store.position(job.id)
    rows = [("state", job.state + (f" (#{position} in line)" if position else "")
             + (" (cancel requested)" if job.cancel_requested and not job.done else "")),
            ("priority", job.priority), ("owner", job.owner or "-"),
            ("created", _when(job.created_at)), ("started", _when(job.started_at)),
            ("finished", _when(job.finished_at)), ("worker", job.worker_id or "-"),
            ("attempts", f"{job.attempts} of {job.max_attempts}"),
            ("progress", f"step {job.step}/{job.total}, loss {job.loss:.4f}" if job.step is not None else "-"),
            ("result", f"{len(job.result)} bytes PNG" if job.result else "-"),
            ("timelapse", f"{len(job.timelapse)} bytes MP4" if job.timelapse else "-")]
    if job.error:
        rows.append(("error", job.error))
    print(f"job {job.id}")
    for name, value in rows:
        print(f"  {name + ':':<11}{value}")
    print("  config:    " + json.dumps(job.config, sort_keys=True))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with open_db(args.db) as store:
        job = _get(store, args.id)
        if not store.cancel(job.id):
            raise JobError(f"job {job.id} is already {store.get(job.id).state}")
        if store.get(job.id).state == CANCELLED:
            print(f"job {job.id} cancelled")
        else:
            print(f"job {job.id}: cancel requested; its worker stops it after the current step")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    with open_db(args.db) as store:
        new_id = store.retry(args.id)
    print(new_id)
    print(f"job {args.id} queued again as job {new_id}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from generator.output import atomic_write

    with open_db(args.db) as store:
        job = _get(store, args.id)
    if job.result is None:
        raise JobError(f"job {job.id} has no result: it {_ending(job) if job.done else 'is ' + job.state}")
    print(atomic_write(args.file, job.result))
    return 0


def _get(store: JobStore, job_id: int):
    job = store.get(job_id)
    if job is None:
        raise JobError(f"no job {job_id}")
    return job


def _ending(job) -> str:
    if job.state == FAILED:
        return f"failed: {job.error}"
    return "was cancelled" if job.state == CANCELLED else f"is {job.state}"


def _when(seconds: float | None) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


# -- worker ----------------------------------------------------------------------------------------------

def cmd_worker(args: argparse.Namespace) -> int:
    from app.worker import Worker

    store = open_db(args.db)
    worker = Worker(store, device=args.device, concurrency=args.concurrency, lease=args.lease, poll=args.poll,
                    max_jobs=args.max_jobs, once=args.once, batch=args.batch)

    def on_signal(signum, _frame):
        if worker.stopping.is_set():  # a second signal: quit now; the job's lease will expire
            worker.log(worker.id, f"{signal.Signals(signum).name} again: exiting now")
            os._exit(1)
        worker.log(worker.id, f"{signal.Signals(signum).name}: finishing the current step, then stopping")
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    finally:
        store.close()
    return 0


def register(sub) -> None:
    from app.cli_generate import add_generation_options

    p = sub.add_parser("submit", help="queue one image for a worker to make",
                       description="Queue a generation (checked first); prints the job id.")
    p.add_argument("prompt", nargs="?", help="text prompt, e.g. 'a red circle:1 | blurry:-0.5'")
    add_generation_options(p, local=False)
    add_db_option(p)
    p.add_argument("--priority", type=int, default=0, help="higher runs first")
    p.add_argument("--wait", action="store_true",
                   help="show progress until the job ends, then save the PNG in --out and print its path")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list, show, cancel, retry or export queued jobs")
    jobs = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    jobs.required = True
    q = jobs.add_parser("list", help="jobs newest first")
    q.add_argument("--state", choices=STATES, help="only jobs in this state")
    q.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    q.set_defaults(func=cmd_list)
    for name, func, what in [("show", cmd_show, "everything about one job"),
                             ("cancel", cmd_cancel, "cancel a queued or running job"),
                             ("retry", cmd_retry, "queue a failed or cancelled job again; prints the new id"),
                             ("export", cmd_export, "write a finished job's PNG to FILE")]:
        q = jobs.add_parser(name, help=what)
        q.add_argument("id", type=int, metavar="ID")
        if name == "export":
            q.add_argument("file", metavar="FILE")
        q.set_defaults(func=func)
    for q in jobs.choices.values():
        add_db_option(q)

    p = sub.add_parser("worker", help="run queued jobs on this machine until stopped",
                       description="Claim jobs and run them. SIGTERM or Ctrl-C: finish the current step, "
                                   "put the job back in the queue and exit; a second signal exits at once.")
    add_db_option(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")
    p.add_argument("--concurrency", type=int, default=1,
                   help="jobs at once, as threads sharing one copy of the models (default: 1)")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="run up to N compatible jobs (same models, size, cutouts) as one batch per slot: more "
                        "jobs/hour for N times the step memory (default: 1)")
    p.add_argument("--lease", type=float, default=60.0, metavar="SECONDS",
                   help="a job whose worker died runs again after this (default: 60)")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                   help="wait between claims while the queue is empty (default: 1)")
    p.add_argument("--max-jobs", type=int, metavar="N", help="exit after N jobs (default: no limit)")
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")
    p.set_defaults(func=cmd_worker)
