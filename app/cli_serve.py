"""`vqclip serve`: the web UI on the job queue, with one local worker child (restarted if it dies).

    vqclip serve                                   # http://127.0.0.1:7860, SQLite queue in the data folder
    vqclip serve --db postgresql://vqclip:pw@db-host/vqclip --no-worker    # UI for a fleet of workers
    vqclip serve --host 0.0.0.0 --auth-file users.txt                      # reachable from other machines

The UI only reads and writes the job store; the worker (or a fleet of them) runs the engine.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from app.web.limits import Limits


def limits_from_args(args: argparse.Namespace) -> Limits:
    return Limits(max_side=args.max_size, max_pixels=args.max_pixels, max_steps=args.max_steps,
                  max_cutn=args.max_cutn, max_queued_per_user=args.max_queued_per_user,
                  max_queued=args.max_queued, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                  max_upload_pixels=args.max_upload_pixels)


def cmd_serve(args: argparse.Namespace) -> int:
    """Stages: 1. refuse an unprotected public address; 2. open the queue; 3. start the worker;
    4. serve until SIGINT/SIGTERM; 5. stop the worker (its job goes back in the queue)."""
    from app.web.auth import credentials

    users = credentials(args.host, args.auth, args.auth_file, args.insecure)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.cli_jobs import open_db
    from app.jobs import data_dir

    if args.db is None:
        data_dir().mkdir(parents=True, exist_ok=True)
    db = args.db or f"sqlite:///{data_dir() / 'jobs.db'}"
    store = open_db(db)
    limits = limits_from_args(args)
    files = Path(tempfile.mkdtemp(prefix="vqclip-web-"))
    supervisor = None
    try:
        if not args.no_worker:
            from app.supervisor import WorkerSupervisor

            supervisor = WorkerSupervisor(db, device=args.device)
            supervisor.start()
        return _serve(args, store, limits, files, users, local_worker=not args.no_worker)
    finally:
        if supervisor is not None:
            supervisor.stop()
        store.close()
        shutil.rmtree(files, ignore_errors=True)


def _serve(args, store, limits, files, users, local_worker: bool) -> int:
    from app.web.handlers import WebApp
    from app.web.layout import build

    # Checking a config imports the engine's CLIP module (and torch): do it now, not on the first submit.
    threading.Thread(target=importlib.import_module, args=("generator.clip",), daemon=True).start()
    app = WebApp(store, limits, files, local_worker=local_worker, private_history=bool(users))
    demo = build(app)
    demo.queue(default_concurrency_limit=4)
    css = (Path(__file__).parent / "web" / "style.css").read_text()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    demo.launch(server_name=args.host, server_port=args.port, auth=users or None, css=css, quiet=True,
                prevent_thread_lock=True, show_error=False, ssr_mode=False, footer_links=["api"], run_history=False,
                # Gradio's own hard cap: well above ours, so that our check gives the readable message.
                max_file_size=2 * limits.max_upload_bytes + 1024 * 1024)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    queue = store.url.render_as_string(hide_password=True) if hasattr(store, "url") else "?"
    print(f"vqclip serve: UI at http://{host}:{args.port} (queue {queue}, "
          f"{'no local worker' if not local_worker else 'one local worker on ' + args.device})",
          file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        demo.close()
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="the web UI, with the job queue and one local worker",
                       description="Serve the web UI on the job queue. Without --no-worker, one worker child "
                                   "process runs the jobs on this machine and is restarted if it dies.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback needs --auth or --auth-file")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--db", metavar="URL", default=None,
                   help="job queue: sqlite:///path/jobs.db or postgresql://user:pw@host/db "
                        "(default: the embedded SQLite queue in the data folder)")
    p.add_argument("--no-worker", action="store_true", help="start no local worker (a fleet drains the queue)")
    p.add_argument("--device", default="auto", help="the local worker's device: auto, cpu or cuda:N")
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require this login")
    p.add_argument("--auth-file", metavar="FILE", help="require a login from this file (user:password lines)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without a login (anyone who can reach it can use it)")
    d = Limits()
    p.add_argument("--max-queued-per-user", type=int, default=d.max_queued_per_user, metavar="N",
                   help="jobs one user may have waiting or running")
    p.add_argument("--max-queued", type=int, default=d.max_queued, metavar="N",
                   help="jobs everyone together may have waiting or running")
    p.add_argument("--max-size", type=int, default=d.max_side, metavar="PX", help="largest width or height")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, metavar="N", help="largest width x height")
    p.add_argument("--max-steps", type=int, default=d.max_steps, metavar="N")
    p.add_argument("--max-cutn", type=int, default=d.max_cutn, metavar="N", help="most cutouts per step")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20, metavar="MB",
                   help="largest uploaded image file")
    p.add_argument("--max-upload-pixels", type=int, default=d.max_upload_pixels, metavar="N",
                   help="largest uploaded image in pixels (checked before decoding)")
    p.set_defaults(func=cmd_serve)
