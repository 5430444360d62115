"""`vqclip weights list | download NAME | import NAME FILE | verify [NAME]`: the checkpoint cache."""
from __future__ import annotations

import argparse
import sys

from generator import weights

HELP = argparse.ArgumentDefaultsHelpFormatter


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


def _state(name: str, rehash: bool) -> str:
    states = {state for _, state, _ in weights.status(name, rehash=rehash)}
    for state in (weights.BAD, weights.MISSING, weights.RECORDED, weights.OK, weights.BUILT_IN):
        if state in states:
            return state
    return "?"


def cmd_list(args) -> int:
    records = sorted(weights.REGISTRY.values(), key=lambda r: (r.kind != "tiny", r.kind, r.name))
    print(f"cache: {weights.cache_dir()}")
    print(f"{'NAME':28} {'KIND':5} {'SIZE':>9}  {'STATE':9} DESCRIPTION")
    for r in records:
        if args.kind != "all" and r.kind != args.kind:
            continue
        hashed = "" if r.sha256 or r.kind == "tiny" else " [hash recorded on first download]"
        print(f"{r.name:28} {r.kind:5} {_size(r.size):>9}  {_state(r.name, args.rehash):9} {r.description}{hashed}")
    return 0


def cmd_download(args) -> int:
    path = weights.download(args.name, progress=not args.quiet, timeout=args.timeout)
    print(path)
    return 0


def cmd_import(args) -> int:
    path = weights.import_file(args.name, args.file)
    print(f"{args.file} verified and stored as {path}")
    return 0


def cmd_verify(args) -> int:
    names = [args.name] if args.name else sorted(weights.REGISTRY)
    bad = False
    for name in names:
        for filename, state, detail in weights.status(name, rehash=True):
            print(f"{name:28} {state:9} {detail if state != weights.MISSING else filename + ' not downloaded'}")
            bad |= state == weights.BAD or (args.name is not None and state == weights.MISSING)
    return 1 if bad else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights", help="list, download, import and verify checkpoints", formatter_class=HELP,
        description="Checkpoints live in $VQCLIP_WEIGHTS_DIR, else weights/ of a source checkout, else "
        "~/.cache/vqclip/weights. $VQCLIP_WEIGHTS_MIRROR (a base URL) is tried before the registry's URLs.",
    )
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("list", help="every known checkpoint and whether it is in the cache", formatter_class=HELP)
    p.add_argument("--kind", choices=("all", "vqgan", "clip", "tiny"), default="all", help="show only this kind")
    p.add_argument("--rehash", action="store_true", default=False,
                   help="hash present files again instead of trusting the result cached per size and mtime")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("download", help="download a checkpoint (and its config), verified by sha256",
                       formatter_class=HELP)
    p.add_argument("name", metavar="NAME", help="a name from `vqclip weights list`")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to connect and for each read")
    p.add_argument("--quiet", action="store_true", default=False, help="no progress bar")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("import", help="verify a file fetched by hand and copy it into the cache",
                       formatter_class=HELP)
    p.add_argument("name", metavar="NAME", help="a name from `vqclip weights list`")
    p.add_argument("file", metavar="FILE", help="the checkpoint, or a .yaml file for a VQGAN's config")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("verify", help="rehash cached files; exit status 1 if one is bad", formatter_class=HELP)
    p.add_argument("name", metavar="NAME", nargs="?", default=None, help="one checkpoint (default: all)")
    p.set_defaults(func=cmd_verify)


if __name__ == "__main__":  # pragma: no cover
    from app.cli import main

    sys.exit(main(["weights", *sys.argv[1:]]))
