"""Shared fixtures: the tiny model pair, a shared model cache, a real HTTP file server on 127.0.0.1, and a
PostgreSQL server started by tests/services/postgres.sh when VQCLIP_TEST_PG_URL is not set (if it cannot
start, the tests that need it fail with the script's error)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from generator import GenerationConfig, ModelCache


@dataclass
class ServedFile:
    body: bytes
    cut_after: int | None = None  # close the connection after this many bytes of the file...
    cuts_left: int = 0            # ...on this many requests
    ignore_range: bool = False    # answer Range requests with the whole file (200)


@dataclass
class FileServer:
    """What the server holds and the requests it saw: (path, Range header or None)."""

    url: str
    files: dict[str, ServedFile] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def add(self, path: str, body: bytes, **behaviour) -> str:
        self.files[path] = ServedFile(body, **behaviour)
        return self.url + path


def _handler(state: FileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            served = state.files.get(self.path)
            if served is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, start = served.body, 0
            match = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if match and not served.ignore_range:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            end = len(body)
            if served.cuts_left > 0 and served.cut_after is not None:
                served.cuts_left -= 1
                end = max(start, served.cut_after)
                self.close_connection = True
            self.wfile.write(body[start:end])
            self.wfile.flush()
            if end < len(body):
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


@pytest.fixture
def file_server():
    """A threaded HTTP server on 127.0.0.1 with Range support and scripted failures."""
    state = FileServer(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url():
    """An http URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def tiny_config(**overrides) -> GenerationConfig:
    settings = dict(prompts="research computing team logo", vqgan="tiny", clip="tiny",
                    width=64, height=64, steps=10, seed=1, cutn=8)
    settings.update(overrides)
    return GenerationConfig.from_dict(settings)


@pytest.fixture(scope="session")
def models():
    """Models stay loaded across tests, as in the worker."""
    return ModelCache("cpu")

PG_SCRIPT = Path(__file__).parent / "services" / "postgres.sh"


def postgres_service(command: str) -> str:
    """Run tests/services/postgres.sh COMMAND; returns its stdout (the URL for start/restart)."""
    proc = subprocess.run(["bash", str(PG_SCRIPT), command], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{PG_SCRIPT} {command} failed (exit {proc.returncode}):\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the test database: $VQCLIP_TEST_PG_URL, or the script's own server."""
    return os.environ.get("VQCLIP_TEST_PG_URL") or postgres_service("start").splitlines()[-1]


@pytest.fixture(scope="session")
def pg_control(pg_url):
    """postgres_service, for tests that stop or restart the server; only for the script's own server."""
    if pg_url != postgres_service("url"):
        pytest.skip("VQCLIP_TEST_PG_URL names a server that tests/services/postgres.sh does not manage")
    return postgres_service
