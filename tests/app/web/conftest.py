"""A real `vqclip serve` (UI + its worker child) for the web tests, and a real headless Chromium.

The server runs as a subprocess on a free port with its own SQLite queue and data folder, once for the whole
session (tests that restart it call `server.restart()`). Chromium is Debian's package, installed by
tests/services/chromium.sh and driven by Playwright; nothing is downloaded by Playwright.
Screenshots go to tests/app/web/artifacts/ (git-ignored).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.app.cli_helpers import ROOT

ARTIFACTS = Path(__file__).parent / "artifacts"
START_DEADLINE = 180  # seconds; a guard against hanging, never a timing assertion
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MAX_UPLOAD_MB = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m app.cli serve` on 127.0.0.1 with one CPU worker; stderr (its log and the worker's) in a file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.db = f"sqlite:///{folder / 'jobs.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "serve.log"
        self.proc: subprocess.Popen | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
               "VQCLIP_DATA_DIR": str(self.folder / "data"), "GRADIO_ANALYTICS_ENABLED": "False"}
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), "--db", self.db,
                 "--device", "cpu", "--max-upload-mb", str(MAX_UPLOAD_MB)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_DEADLINE
        while "UI at http" not in self.log.split("--- restart ---")[-1]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"vqclip serve did not start (exit {self.proc.poll()}):\n{self.log}")
            time.sleep(0.2)

    def stop(self) -> int:
        """SIGTERM: the server stops its worker, then exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=START_DEADLINE)

    def restart(self) -> None:
        assert self.stop() == 0, self.log
        with open(self.log_path, "a") as log:
            log.write("--- restart ---\n")
        self.start()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"))
    srv.start()
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    done = subprocess.run(["bash", str(ROOT / "tests/services/chromium.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"tests/services/chromium.sh failed:\n{done.stderr}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture
def page(browser, server, artifacts, request):
    """A fresh browser context (its own localStorage, so its own session) on the server's page; a screenshot
    named after the test is saved when the test fails."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        pg.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
