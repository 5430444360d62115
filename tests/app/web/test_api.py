"""The Gradio API of `vqclip serve` through gradio_client, as the README documents it: submit, poll, fetch."""
from __future__ import annotations

import time

import pytest
from gradio_client import Client
from PIL import Image

from generator.output import KEY_CONFIG

DEADLINE = 180  # seconds; a guard against hanging only


def test_submit_poll_and_fetch_a_result(server):
    client = Client(server.url, verbose=False)
    job = client.predict(prompt="a red circle", width=64, height=64, steps=10, seed=7, vqgan="tiny", clip="tiny",
                         cutn=4, api_name="/submit")
    assert isinstance(job["job"], int)
    deadline = time.monotonic() + DEADLINE
    while not (status := client.predict(job=job["job"], api_name="/status"))["done"]:
        assert time.monotonic() < deadline, server.log
        time.sleep(0.5)
    assert status["state"] == "succeeded", status
    path = client.predict(job=job["job"], api_name="/result")
    with Image.open(path) as image:
        assert image.size == (64, 64)
        assert '"seed": 7' in image.text[KEY_CONFIG]


def test_api_refusals_are_messages(server):
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="over this server's limit"):
        client.predict(prompt="too big", width=4096, height=4096, steps=10, vqgan="tiny", clip="tiny",
                       api_name="/submit")
    with pytest.raises(Exception, match="Unknown VQGAN model"):
        client.predict(prompt="a path", vqgan="/etc/passwd", clip="tiny", api_name="/submit")
    with pytest.raises(Exception, match="has no image yet"):
        client.predict(job=10**6, api_name="/result")
