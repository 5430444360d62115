"""`vqclip weights ...` run as a real subprocess: `pytest tests/app/test_cli_weights.py`."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def vqclip(*args, cache, env=None, timeout=60):
    environment = {k: v for k, v in os.environ.items() if k != "VQCLIP_WEIGHTS_MIRROR"}
    environment.update(VQCLIP_WEIGHTS_DIR=str(cache), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "weights", *args],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout,
    )


def online() -> bool:
    try:
        socket.getaddrinfo("huggingface.co", 443)
        return True
    except OSError:
        return False


def tiny_ckpt(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save({"state_dict": {"quantize.embedding.weight": torch.randn(8, 4)}, "epoch": 0}, path)
    return path


def test_every_option_shows_its_default():
    for action in ("list", "download", "import", "verify"):
        result = subprocess.run([sys.executable, "-m", "app.cli", "weights", action, "--help"],
                                cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        options = [line for line in result.stdout.splitlines() if line.strip().startswith("--")]
        assert result.stdout.count("(default:") >= len(options), result.stdout


def test_list_shows_every_record_and_the_tiny_models(tmp_path):
    result = vqclip("list", cache=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("vqgan_imagenet_f16_1024", "vqgan_imagenet_f16_16384", "wikiart_16384", "gumbel_f8_8192",
                 "sflckr", "coco", "ViT-B-32/openai", "ViT-B-16/openai", "RN50/openai"):
        assert f"\n{name} " in result.stdout
    assert "980.1 MB" in result.stdout and "missing" in result.stdout
    tiny = next(line for line in result.stdout.splitlines() if line.startswith("tiny "))
    assert "built-in" in tiny


@pytest.mark.skipif(online(), reason="this machine reaches huggingface.co: it would download 980 MB")
def test_offline_download_fails_fast_naming_urls_and_import_command(tmp_path):
    result = vqclip("download", "vqgan_imagenet_f16_16384", "--quiet", cache=tmp_path, timeout=30)

    assert result.returncode == 2
    assert result.stderr.startswith("vqclip: error: could not download vqgan_imagenet_f16_16384")
    assert "https://heibox.uni-heidelberg.de/" in result.stderr
    assert "https://huggingface.co/Somnai/pytti-vqgan-checkpoints/" in result.stderr
    assert "vqclip weights import vqgan_imagenet_f16_16384 FILE" in result.stderr
    assert not any(p.suffix in (".ckpt", ".yaml", ".part") for p in tmp_path.rglob("*"))


def test_import_of_a_wrong_file_fails_and_leaves_nothing(tmp_path):
    cache = tmp_path / "cache"
    wrong = tiny_ckpt(tmp_path / "last.ckpt")

    result = vqclip("import", "vqgan_imagenet_f16_16384", str(wrong), cache=cache)

    assert result.returncode == 2
    assert "980092370 bytes" in result.stderr
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_through_mirror_then_verify(tmp_path, file_server):
    """A record without a published hash, served by the loopback server set as the mirror."""
    ckpt = tiny_ckpt(tmp_path / "src.ckpt").read_bytes()
    file_server.add("/m/vqgan_imagenet_f16_1024.ckpt", ckpt)
    file_server.add("/m/vqgan_imagenet_f16_1024.yaml", b"model: {}\n")
    cache = tmp_path / "cache"
    mirror = {"VQCLIP_WEIGHTS_MIRROR": file_server.url + "/m"}

    result = vqclip("download", "vqgan_imagenet_f16_1024", cache=cache, env=mirror)

    assert result.returncode == 0, result.stderr
    assert (cache / "vqgan_imagenet_f16_1024.ckpt").read_bytes() == ckpt
    assert [path for path, _ in file_server.requests] == ["/m/vqgan_imagenet_f16_1024.yaml",
                                                         "/m/vqgan_imagenet_f16_1024.ckpt"]
    verified = vqclip("verify", "vqgan_imagenet_f16_1024", cache=cache)
    assert verified.returncode == 0 and verified.stdout.count(" ok ") == 2, verified.stdout

    (cache / "vqgan_imagenet_f16_1024.ckpt").write_bytes(ckpt[::-1])
    verified = vqclip("verify", "vqgan_imagenet_f16_1024", cache=cache)
    assert verified.returncode == 1 and "sha256 mismatch" in verified.stdout


def test_import_by_hand_then_verify(tmp_path):
    cache = tmp_path / "cache"
    ckpt = tiny_ckpt(tmp_path / "last.ckpt")
    config = tmp_path / "model.yaml"
    config.write_text("model: {}\n")

    assert vqclip("verify", "vqgan_imagenet_f16_1024", cache=cache).returncode == 1  # missing
    for path in (ckpt, config):
        result = vqclip("import", "vqgan_imagenet_f16_1024", str(path), cache=cache)
        assert result.returncode == 0, result.stderr
    assert vqclip("verify", "vqgan_imagenet_f16_1024", cache=cache).returncode == 0


def test_unknown_name_is_a_one_line_error(tmp_path):
    result = vqclip("download", "imagenet", cache=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "known:" in result.stderr
