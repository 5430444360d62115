"""The web UI end to end in headless Chromium against a real `vqclip serve` and its worker, on the bundled
shapes demo pair (the default when the real weights are absent).

    .venv/bin/python -m pytest tests/app/web/test_browser.py -q -s      # -s prints the screenshots' folder
"""
from __future__ import annotations

import io
import os
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from app.jobs import SUCCEEDED, open_store
from generator.output import KEY_CONFIG
from tests.app.web.conftest import MAX_UPLOAD_MB
from tests.app.worker_helpers import job_config, wait_until

JOB_DONE = 120_000  # ms; a guard against hanging only
PROMPT = "a lighthouse at dusk:1 | fog:0.5"


def open_ui(page, server):
    page.goto(server.url)
    expect(page.locator("#vq-prompt textarea")).to_be_visible(timeout=60_000)


def card(page, state: str):
    return page.locator(f'#vq-card [data-state="{state}"]')


def generate(page, prompt: str, steps: int) -> None:
    page.fill("#vq-prompt textarea", prompt)
    steps_box = page.locator("#vq-steps input[type=number]")
    steps_box.fill(str(steps))
    steps_box.press("Tab")
    page.click("#vq-generate")


def test_generate_on_the_shapes_demo_shows_progress_then_image(page, server, artifacts):
    open_ui(page, server)
    expect(page.locator("#vq-banner")).to_contain_text("vqclip weights download")
    expect(page.locator("#vq-banner")).to_contain_text("Shapes demo (works offline)")
    expect(page.locator("#vq-vqgan input")).to_have_value("Shapes demo (works offline)")
    expect(page.locator("#vq-prompt textarea")).to_have_attribute("placeholder", "a large red circle on the left")
    page.screenshot(path=str(artifacts / "01-start.png"), full_page=True)

    generate(page, PROMPT, 20)
    expect(page.locator("#vq-notice")).to_contain_text("queued", timeout=JOB_DONE)
    expect(page.locator("#vq-notice")).to_contain_text("never taught 'lighthouse', 'dusk', 'fog'")
    expect(card(page, "running")).to_contain_text("step", timeout=JOB_DONE)
    expect(page.locator("#vq-preview img")).to_be_visible(timeout=JOB_DONE)
    page.screenshot(path=str(artifacts / "02-running.png"), full_page=True)

    expect(card(page, "succeeded")).to_contain_text("20 steps", timeout=JOB_DONE)
    expect(page.locator("#vq-png")).to_be_visible()
    page.screenshot(path=str(artifacts / "03-done.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#vq-png")
    with Image.open(download.value.path()) as image:
        assert image.size == (64, 64)
        assert "a lighthouse at dusk" in image.text[KEY_CONFIG]


def test_cancel_queued_and_running_jobs_and_reload_keeps_them(page, server, artifacts):
    open_ui(page, server)
    generate(page, "a very long job", 2000)
    expect(card(page, "running")).to_be_visible(timeout=JOB_DONE)
    running_id = card(page, "running").get_attribute("data-job")
    generate(page, "a job that waits", 2000)
    expect(card(page, "queued")).to_contain_text("#1 in line", timeout=JOB_DONE)

    page.reload()  # the session lives in the browser: the jobs are still here after a reload
    expect(page.locator("#vq-my-jobs")).to_contain_text("a job that waits", timeout=JOB_DONE)
    page.locator("#vq-my-jobs").get_by_text("a job that waits").last.click()
    expect(card(page, "queued")).to_be_visible(timeout=JOB_DONE)
    page.click("#vq-cancel")
    expect(card(page, "cancelled")).to_contain_text("cancelled before it started", timeout=JOB_DONE)

    page.locator("#vq-my-jobs").get_by_text("a very long job").last.click()
    expect(page.locator(f'#vq-card [data-job="{running_id}"][data-state="running"]')).to_be_visible(
        timeout=JOB_DONE)
    page.screenshot(path=str(artifacts / "04-before-cancel.png"), full_page=True)
    page.click("#vq-cancel")
    expect(card(page, "cancelled")).to_contain_text("stopped at step", timeout=JOB_DONE)
    page.screenshot(path=str(artifacts / "05-cancelled.png"), full_page=True)


def test_oversized_upload_is_refused_with_a_message(page, server, artifacts, tmp_path):
    noise = Image.frombytes("RGB", (400, 400), random.Random(0).randbytes(400 * 400 * 3))
    big = tmp_path / "big.png"
    noise.save(big)
    assert os.path.getsize(big) > MAX_UPLOAD_MB * 2**20
    open_ui(page, server)
    page.click("#vq-advanced button")
    page.locator("#vq-init input[type=file]").set_input_files(str(big))
    expect(page.locator("#vq-upload-note")).to_contain_text("over this server's limit", timeout=JOB_DONE)
    page.screenshot(path=str(artifacts / "06-upload-refused.png"), full_page=True)

    small = io.BytesIO()
    noise.resize((64, 64)).save(small, format="PNG")
    (tmp_path / "small.png").write_bytes(small.getvalue())
    page.locator("#vq-init input[type=file]").set_input_files(str(tmp_path / "small.png"))
    expect(page.locator("#vq-upload-note")).to_contain_text("Init image ready", timeout=JOB_DONE)


def test_history_survives_a_server_restart(page, server, artifacts):
    with open_store(server.db) as store:
        if not any(PROMPT in str(j.config.get("prompts")) for j in store.list(state=SUCCEEDED)):
            store.submit(job_config(prompts=PROMPT, steps=5))
            wait_until(lambda: store.list(state=SUCCEEDED), "a finished job")
    server.restart()
    open_ui(page, server)
    page.get_by_role("tab", name="History").click()
    gallery = page.locator("#vq-gallery")
    expect(gallery).to_contain_text("a lighthouse at dusk", timeout=JOB_DONE)
    gallery.locator("button").filter(has_text="a lighthouse at dusk").first.click()
    expect(page.locator("#vq-use")).to_be_visible()
    page.screenshot(path=str(artifacts / "07-history-after-restart.png"), full_page=True)
    page.click("#vq-use")
    expect(page.locator("#vq-prompt textarea")).to_have_value(PROMPT)


def tile(page, seed: int):
    return page.locator("#vq-grid button").filter(has_text=re.compile(rf"^\s*seed {seed}\s*$"))


def download_export(page, suffix: str) -> Path:
    link = page.locator(f'#vq-export-files a[href$="{suffix}"]').first
    expect(link).to_be_visible(timeout=JOB_DONE)
    with page.expect_download() as download:
        link.click()
    return Path(download.value.path())


def test_variations_grid_use_this_seed_and_exports(page, server, artifacts):
    open_ui(page, server)
    page.fill("#vq-seed input", "11")
    page.fill("#vq-variations input", "3")
    generate(page, "a large blue circle on the left", 10)
    expect(page.locator("#vq-notice")).to_contain_text("3 jobs queued", timeout=JOB_DONE)
    expect(page.locator("#vq-notice")).to_contain_text("seeds 11, 12, 13")
    for seed in (11, 12, 13):
        expect(tile(page, seed)).to_have_count(1, timeout=3 * JOB_DONE)
    expect(page.locator("#vq-grid-note")).to_contain_text("3 of 3 done")
    page.screenshot(path=str(artifacts / "08-variations-grid.png"), full_page=True)

    tile(page, 12).click()
    expect(page.locator("#vq-picked-info")).to_contain_text("12")
    page.fill("#vq-seed input", "999")
    page.click("#vq-use-seed")
    expect(page.locator("#vq-seed input")).to_have_value("12")
    expect(page.locator("#vq-variations input")).to_have_value("1")
    expect(page.locator("#vq-notice")).to_contain_text("Settings of job")

    page.fill("#vq-colors input", "70")
    page.click("#vq-export-svg")
    expect(page.locator("#vq-export-note")).to_contain_text("between 2 and 64", timeout=JOB_DONE)
    page.fill("#vq-colors input", "4")
    page.click("#vq-export-svg")
    svg = ET.parse(download_export(page, ".svg")).getroot()
    assert svg.findall(".//{http://www.w3.org/2000/svg}path")
    assert "a large blue circle" in svg.find("{http://www.w3.org/2000/svg}metadata").text

    page.locator("#vq-tolerance input[type=number]").fill("0.5")
    page.locator("#vq-tolerance input[type=number]").press("Tab")
    page.click("#vq-export-transparent")
    with Image.open(download_export(page, "-transparent.png")) as image:
        alpha = np.asarray(image.getchannel("A"))
    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    assert image.mode == "RGBA" and (border == 0).mean() > 0.5
    page.screenshot(path=str(artifacts / "09-exports.png"), full_page=True)

    page.click("#vq-vary")
    expect(page.locator("#vq-notice")).to_contain_text("Ready to vary job", timeout=JOB_DONE)
    expect(page.locator("#vq-notice")).to_contain_text("seed 12")
    expect(page.locator("#vq-seed input")).to_have_value("12")
