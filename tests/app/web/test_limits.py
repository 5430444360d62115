"""Upload checks, per-job and queue limits, and the login rules of `vqclip serve`, without a browser."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from app.jobs import open_store
from app.web import form, uploads
from app.web.auth import AuthError, credentials, is_loopback, read_auth_file
from app.web.limits import LimitError, Limits
from tests.app.cli_helpers import vqclip
from tests.app.worker_helpers import job_config


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_DATA_DIR", str(tmp_path / "data"))


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels in a few hundred bytes (one compressed black image)."""
    row = b"\x00" + b"\x00" * width
    data = zlib.compress(row * height, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_a_good_image_is_stored_as_a_new_png_under_a_generated_name():
    name = uploads.store_image(png(32, 16), Limits())
    assert uploads.NAME.fullmatch(name)
    path = uploads.path_of(name)
    assert path.parent == uploads.upload_dir()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (32, 16)


def test_too_many_bytes_is_refused_before_decoding():
    with pytest.raises(LimitError, match="over this server's limit of 4.77e-05 MB"):
        uploads.store_image(png(32, 32), Limits(max_upload_bytes=50))


def test_a_decompression_bomb_is_refused_from_its_header():
    data = bomb_png(20_000, 20_000)
    assert len(data) < 1_000_000
    with pytest.raises(LimitError, match="pixels"):
        uploads.check_image(data, Limits(max_upload_pixels=4096 * 4096))
    assert not uploads.upload_dir().exists()


@pytest.mark.parametrize("data", [b"not an image at all", b"%PDF-1.4 ...", b"GIF89a"])
def test_only_image_formats_are_accepted(data):
    with pytest.raises(LimitError, match="not an image vqclip accepts"):
        uploads.store_image(data, Limits())


@pytest.mark.parametrize("name", ["../jobs.db", "/etc/passwd", "x.png", "0" * 32 + ".PNG", None])
def test_upload_names_never_name_other_files(name):
    with pytest.raises(LimitError):
        uploads.path_of(name)


def test_limits_on_size_steps_and_cutouts_each_say_which():
    limits = Limits(max_side=512, max_pixels=256 * 256, max_steps=100, max_cutn=16)
    with pytest.raises(LimitError, match="limit of 512 pixels per side"):
        limits.check_config(dict(width=1024, height=64, steps=10, cutn=8))
    with pytest.raises(LimitError, match="over this server's limit of 65,536"):
        limits.check_config(dict(width=512, height=512, steps=10, cutn=8))
    with pytest.raises(LimitError, match="200 steps is over this server's limit of 100"):
        limits.check_config(dict(width=64, height=64, steps=200, cutn=8))
    with pytest.raises(LimitError, match="32 cutouts"):
        limits.check_config(dict(width=64, height=64, steps=10, cutn=32))
    limits.check_config(dict(width=256, height=256, steps=100, cutn=16))


def test_queue_limits_per_user_and_in_all(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        limits = Limits(max_queued_per_user=2, max_queued=3)
        for _ in range(2):
            limits.check_queue(store, "ann")
            store.submit(job_config(), owner="ann")
        with pytest.raises(LimitError, match="you already have 2 jobs"):
            limits.check_queue(store, "ann")
        limits.check_queue(store, "bob")
        store.submit(job_config(), owner="bob")
        with pytest.raises(LimitError, match="the queue is full"):
            limits.check_queue(store, "cat")


def test_the_form_accepts_registry_names_only():
    values = {**form.defaults("tiny", "tiny", False), "prompt": "a red circle"}
    assert form.to_config(values, None, None, Limits(), check_weights=True)["vqgan"] == "tiny"
    for bad in ({"vqgan": "/tmp/evil.ckpt"}, {"clip": ["ViT-B-32=/etc/passwd"]}):
        with pytest.raises(Exception, match="unknown"):
            form.to_config({**values, **bad}, None, None, Limits(), check_weights=True)


def test_a_missing_weight_is_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("VQCLIP_WEIGHTS_DIR", str(tmp_path / "weights"))
    values = {**form.defaults("vqgan_imagenet_f16_16384", "tiny", True), "prompt": "a red circle"}
    with pytest.raises(Exception, match="vqclip weights download vqgan_imagenet_f16_16384"):
        form.to_config(values, None, None, Limits(), check_weights=True)


def test_logins(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert credentials("127.0.0.1", None, None, False) == []
    with pytest.raises(AuthError, match="--auth user:password"):
        credentials("0.0.0.0", None, None, False)
    assert credentials("0.0.0.0", None, None, True) == []
    assert credentials("0.0.0.0", "ann:pa:ss", None, False) == [("ann", "pa:ss")]
    users = tmp_path / "users.txt"
    users.write_text("# who may log in\nann:one\n\nbob:two\n")
    assert read_auth_file(users) == [("ann", "one"), ("bob", "two")]
    users.write_text("no-password-here\n")
    with pytest.raises(AuthError, match="users.txt:1: expected user:password"):
        read_auth_file(users)


def test_serve_refuses_a_public_address_without_a_login():
    done = vqclip("serve", "--host", "0.0.0.0", "--port", "1", timeout=120)
    assert done.returncode == 2
    assert "--auth user:password or --auth-file FILE, or --insecure" in done.stderr
    assert "Traceback" not in done.stderr
