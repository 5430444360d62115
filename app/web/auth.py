"""Who may use the web UI: `--auth user:password`, `--auth-file FILE`, and the rule that a server reachable
from other machines needs one of them (or an explicit `--insecure`).
"""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from generator.errors import VqclipError


class AuthError(VqclipError):
    """Bad credentials given to `vqclip serve`, or an unprotected public address."""


def parse_credential(text: str, where: str = "--auth") -> tuple[str, str]:
    """`user:password` -> (user, password); the password may contain colons."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise AuthError(f"{where}: expected user:password")
    return user, password


def read_auth_file(path: str | Path) -> list[tuple[str, str]]:
    """One `user:password` per line; blank lines and `#` comments skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise AuthError(f"cannot read auth file {str(path)!r}: {exc.strerror}") from None
    pairs = [parse_credential(line, f"{path}:{number}") for number, line in enumerate(lines, 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not pairs:
        raise AuthError(f"auth file {str(path)!r} has no user:password line")
    return pairs


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) only listens on this machine."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def credentials(host: str, auth: str | None, auth_file: str | None, insecure: bool) -> list[tuple[str, str]]:
    """The credentials to require; AuthError when `host` is reachable from elsewhere and none are given
    (unless `insecure`)."""
    pairs = []
    if auth:
        pairs.append(parse_credential(auth))
    if auth_file:
        pairs.extend(read_auth_file(auth_file))
    if not pairs and not is_loopback(host) and not insecure:
        raise AuthError(
            f"--host {host} makes the UI reachable from other machines: give --auth user:password or "
            f"--auth-file FILE, or --insecure to serve it without a password anyway")
    return pairs
