"""Models by name: registry entries served over loopback HTTP, checkpoint files, ARCH=FILE CLIPs."""
import hashlib
import io

import pytest
import torch
from safetensors.torch import save_file

from generator import ConfigError, Generation, ModelCache, WeightsError, weights
from generator.models import CONFIG_DIR, load_clip, load_vqgan
from generator.weights import ConfigFile, WeightRecord
from tests.conftest import tiny_config

TINY_YAML = (CONFIG_DIR / "vqgan_tiny.yaml").read_bytes()


def lightning_ckpt(state: dict) -> bytes:
    """taming's real checkpoint format: the state dict (with loss weights) inside a lightning dict."""
    full = {**state, "loss.discriminator.main.0.weight": torch.zeros(4, 3, 4, 4)}
    buffer = io.BytesIO()
    torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8", "state_dict": full,
                "optimizer_states": [], "lr_schedulers": []}, buffer)
    return buffer.getvalue()


@pytest.fixture
def trained_state():
    model, _ = load_vqgan("tiny")
    torch.nn.init.normal_(model.decoder.conv_out.weight, std=0.3, generator=torch.Generator().manual_seed(5))
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_registry_vqgan_downloads_loads_and_generates(file_server, tmp_path, monkeypatch, trained_state):
    monkeypatch.setenv("VQCLIP_WEIGHTS_DIR", str(tmp_path / "cache"))
    body = lightning_ckpt(trained_state)
    record = WeightRecord(
        name="test_vqgan", kind="vqgan", filename="test_vqgan.ckpt",
        urls=(file_server.add("/test_vqgan.ckpt", body),), sha256=hashlib.sha256(body).hexdigest(),
        size=len(body), description="test", source="tests",
        config=ConfigFile("test_vqgan.yaml", (file_server.add("/test_vqgan.yaml", TINY_YAML),),
                          hashlib.sha256(TINY_YAML).hexdigest(), len(TINY_YAML)),
    )
    monkeypatch.setitem(weights.REGISTRY, "test_vqgan", record)
    with pytest.raises(WeightsError, match="vqclip weights import"):
        load_vqgan("test_vqgan")  # not downloaded yet: the message says how to get it
    weights.download("test_vqgan", progress=False)
    model, sha256 = load_vqgan("test_vqgan")
    assert sha256 == record.sha256
    assert torch.equal(model.decoder.conv_out.weight, trained_state["decoder.conv_out.weight"])
    gen = Generation(tiny_config(vqgan="test_vqgan", steps=2), device="cpu", models=ModelCache("cpu"))
    gen.run()
    assert gen.vqgan.sha256 == record.sha256


def test_vqgan_checkpoint_file_with_config_beside(tmp_path, trained_state):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(lightning_ckpt(trained_state))
    with pytest.raises(ConfigError, match="needs its taming config YAML beside it"):
        load_vqgan(str(ckpt))
    (tmp_path / "model.yaml").write_bytes(TINY_YAML)
    model, sha256 = load_vqgan(str(ckpt))
    assert sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert torch.equal(model.codebook, trained_state["quantize.embedding.weight"])


def test_checkpoint_missing_a_weight_is_refused(tmp_path, trained_state):
    del trained_state["encoder.conv_in.bias"]
    ckpt = tmp_path / "broken.ckpt"
    ckpt.write_bytes(lightning_ckpt(trained_state))
    (tmp_path / "broken.yaml").write_bytes(TINY_YAML)
    with pytest.raises(WeightsError, match="'encoder.conv_in.bias'"):
        load_vqgan(str(ckpt))


def test_clip_from_local_safetensors_file(tmp_path):
    source = load_clip("tiny")
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    loaded = load_clip(f"vqclip-tiny={path}")
    assert torch.equal(loaded.encode_text(["a logo"]), source.encode_text(["a logo"]))
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match="unknown VQGAN 'nope'.*vqgan_imagenet_f16_16384"):
        load_vqgan("nope")
    with pytest.raises(ConfigError, match="unknown CLIP model 'nope'.*ViT-B-32/openai"):
        load_clip("nope")
    with pytest.raises(ConfigError, match="is a clip model, not a VQGAN"):
        load_vqgan("ViT-B-32/openai")
