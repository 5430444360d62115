"""The weights registry and cache against a real HTTP server: `pytest tests/generator/test_weights.py`."""
import hashlib
import io
import os

import pytest
import torch

from generator import weights
from generator.checkpoint import read_state_dict
from generator.errors import WeightsError
from generator.weights import ConfigFile, WeightRecord

CONFIG = b"model:\n  target: taming.models.vqgan.VQModel\n  params:\n    embed_dim: 4\n    n_embed: 8\n"


def tiny_ckpt_bytes() -> bytes:
    """A small checkpoint in taming's real format: a lightning dict around the state dict."""
    torch.manual_seed(0)
    # ~200 KB, so a cut-off transfer lands mid-file
    state = {"quantize.embedding.weight": torch.randn(8, 4), "decoder.conv_out.weight": torch.randn(50, 1000)}
    buf = io.BytesIO()
    torch.save({"state_dict": state, "epoch": 1, "optimizer_states": [], "lr_schedulers": []}, buf)
    return buf.getvalue()


BODY = tiny_ckpt_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VQCLIP_WEIGHTS_MIRROR", raising=False)
    return tmp_path / "cache"


def register(monkeypatch, name, urls, *, sha256="known", size="known", config_urls=None):
    record = WeightRecord(
        name=name, kind="vqgan", filename=f"{name}.ckpt", urls=tuple(urls),
        sha256=sha(BODY) if sha256 == "known" else sha256,
        size=len(BODY) if size == "known" else size,
        description="test VQGAN", source="tests",
        config=ConfigFile(f"{name}.yaml", tuple(config_urls), sha(CONFIG), len(CONFIG)) if config_urls else None,
    )
    monkeypatch.setitem(weights.REGISTRY, name, record)
    return record


def leftovers(cache):
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".json")) if cache.exists() else []


def test_download_verifies_and_reports_progress(file_server, monkeypatch, cache):
    url = file_server.add("/tiny.ckpt", BODY)
    config_url = file_server.add("/tiny.yaml", CONFIG)
    register(monkeypatch, "tiny_test", [url], config_urls=[config_url])
    seen = []

    path = weights.download("tiny_test", progress=lambda done, total: seen.append((done, total)))

    assert path == cache / "tiny_test.ckpt" and path.read_bytes() == BODY
    assert weights.config_path_for("tiny_test").read_bytes() == CONFIG
    assert seen[-1] == (len(BODY), len(BODY))
    assert leftovers(cache) == ["tiny_test.ckpt", "tiny_test.yaml"]
    assert set(read_state_dict(path)) == {"quantize.embedding.weight", "decoder.conv_out.weight"}
    assert weights.verify("tiny_test") == [("tiny_test", weights.OK)]
    assert weights.path_for("tiny_test") == path


def test_corrupt_download_is_refused_and_nothing_is_left(file_server, monkeypatch, cache):
    corrupt = bytearray(BODY)
    corrupt[1000] ^= 0xFF
    url = file_server.add("/tiny.ckpt", bytes(corrupt))
    register(monkeypatch, "tiny_test", [url])

    with pytest.raises(WeightsError) as err:
        weights.download("tiny_test", progress=False)

    assert sha(BODY) in str(err.value) and sha(bytes(corrupt)) in str(err.value)
    assert leftovers(cache) == []
    with pytest.raises(WeightsError, match="vqclip weights import tiny_test"):
        weights.path_for("tiny_test")


def test_interrupted_download_resumes_with_a_range_request(file_server, monkeypatch, cache):
    cut = 70_000
    url = file_server.add("/tiny.ckpt", BODY, cut_after=cut, cuts_left=1)
    register(monkeypatch, "tiny_test", [url])

    with pytest.raises(WeightsError, match="run the command again to resume"):
        weights.download("tiny_test", progress=False)
    assert (cache / "tiny_test.ckpt.part").stat().st_size == cut
    assert not (cache / "tiny_test.ckpt").exists()

    path = weights.download("tiny_test", progress=False)

    assert file_server.requests[-1] == ("/tiny.ckpt", f"bytes={cut}-")
    assert path.read_bytes() == BODY and leftovers(cache) == ["tiny_test.ckpt"]
    assert weights.verify("tiny_test") == [("tiny_test", weights.OK)]


def test_server_ignoring_range_restarts_the_file(file_server, monkeypatch, cache):
    url = file_server.add("/tiny.ckpt", BODY, ignore_range=True)
    register(monkeypatch, "tiny_test", [url])
    cache.mkdir()
    (cache / "tiny_test.ckpt.part").write_bytes(BODY[:5000])

    path = weights.download("tiny_test", progress=False)

    assert file_server.requests == [("/tiny.ckpt", "bytes=5000-")]
    assert path.read_bytes() == BODY


def test_partial_file_with_wrong_bytes_is_discarded(file_server, monkeypatch, cache):
    url = file_server.add("/tiny.ckpt", BODY)
    register(monkeypatch, "tiny_test", [url])
    cache.mkdir()
    (cache / "tiny_test.ckpt.part").write_bytes(b"\0" * 5000)

    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.download("tiny_test", progress=False)
    assert leftovers(cache) == []
    assert weights.download("tiny_test", progress=False).read_bytes() == BODY


def test_unreachable_host_names_every_url_and_the_import_command(file_server, closed_port_url, monkeypatch):
    missing = file_server.url + "/gone.ckpt"  # the server answers 404
    dead = f"{closed_port_url}/tiny.ckpt"
    register(monkeypatch, "tiny_test", [dead, missing])

    with pytest.raises(WeightsError) as err:
        weights.download("tiny_test", progress=False, timeout=3)

    message = str(err.value)
    assert dead in message and "unreachable" in message
    assert missing in message and "HTTP 404" in message
    assert "vqclip weights import tiny_test FILE" in message


def test_mirror_env_is_tried_first(file_server, closed_port_url, monkeypatch):
    file_server.add("/mirror/tiny_test.ckpt", BODY)
    register(monkeypatch, "tiny_test", [f"{closed_port_url}/tiny.ckpt"])
    monkeypatch.setenv("VQCLIP_WEIGHTS_MIRROR", file_server.url + "/mirror/")

    assert weights.download("tiny_test", progress=False).read_bytes() == BODY
    assert file_server.requests == [("/mirror/tiny_test.ckpt", None)]


def test_unknown_hash_is_recorded_on_first_download_and_enforced(file_server, monkeypatch, cache):
    url = file_server.add("/tiny.ckpt", BODY)
    register(monkeypatch, "tiny_test", [url], sha256=None, size=None)

    path = weights.download("tiny_test", progress=False)

    assert sha(BODY) in (cache / weights.TRUSTED_FILE).read_text()
    assert weights.sha256_for("tiny_test") == sha(BODY)
    path.write_bytes(BODY[:-1] + b"\1")  # same size, new mtime
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.path_for("tiny_test")
    assert weights.verify("tiny_test") == [("tiny_test", weights.BAD)]


def test_hash_on_use_is_cached_until_the_file_changes(file_server, monkeypatch, cache):
    url = file_server.add("/tiny.ckpt", BODY)
    register(monkeypatch, "tiny_test", [url])
    path = weights.download("tiny_test", progress=False)
    hashed = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: hashed.append(p) or real(p))

    weights.path_for("tiny_test")
    weights.path_for("tiny_test")
    assert hashed == []

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    weights.path_for("tiny_test")
    assert hashed == [path]


def test_import_verifies_and_copies_atomically(tmp_path, monkeypatch, cache):
    register(monkeypatch, "tiny_test", ["http://127.0.0.1:9/unused"], config_urls=["http://127.0.0.1:9/u"])
    good, wrong, config = tmp_path / "good.ckpt", tmp_path / "wrong.ckpt", tmp_path / "model.yaml"
    good.write_bytes(BODY)
    wrong.write_bytes(BODY[::-1])
    config.write_bytes(CONFIG)

    with pytest.raises(WeightsError) as err:
        weights.import_file("tiny_test", wrong)
    assert sha(BODY) in str(err.value) and leftovers(cache) == []

    assert weights.import_file("tiny_test", good).read_bytes() == BODY
    assert weights.verify("tiny_test") == [("tiny_test", weights.MISSING)]  # config still missing
    assert weights.import_file("tiny_test", config) == weights.config_path_for("tiny_test")
    assert weights.verify("tiny_test") == [("tiny_test", weights.OK)]


def test_unknown_name_lists_known_names():
    with pytest.raises(WeightsError, match="known: .*vqgan_imagenet_f16_16384"):
        weights.path_for("imagenet")


def test_registry_records_are_consistent():
    for record in weights.REGISTRY.values():
        assert record.kind in ("vqgan", "clip", "tiny")
        assert record.sha256 is None or len(record.sha256) == 64
        if record.kind == "vqgan":
            assert record.config is not None and (record.urls or record.bundled)
        if record.kind == "clip":
            assert record.arch and record.tag and record.filename.endswith(".safetensors")
    assert weights.get("vqgan_imagenet_f16_16384").size == 980_092_370
    assert weights.get("ViT-B-32/openai").quick_gelu


def test_cache_dir_falls_back_to_the_checkout(monkeypatch):
    monkeypatch.delenv("VQCLIP_WEIGHTS_DIR")
    checkout = weights.Path(weights.__file__).resolve().parents[1] / "weights"
    assert weights.cache_dir() == (checkout if checkout.is_dir() else weights.Path.home() / ".cache/vqclip/weights")
