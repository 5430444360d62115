"""Checkpoints are read as tensors, never as code: `pytest tests/generator/test_checkpoint.py`."""
import builtins
import os
import subprocess

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from generator.checkpoint import convert_to_safetensors, read_state_dict
from generator.errors import UnsafeCheckpointError, WeightsError


def tiny_state_dict():
    torch.manual_seed(0)
    return {
        "encoder.conv_in.weight": torch.randn(4, 3, 3, 3),
        "quantize.embedding.weight": torch.randn(8, 4),
        "decoder.conv_out.bias": torch.randn(3),
    }


def lightning_checkpoint(state_dict, **extra):
    """A checkpoint laid out as pytorch-lightning saves it, with the objects taming's files hold."""
    callback = ModelCheckpoint(dirpath="/tmp/vqclip-never-used", monitor="val/rec_loss")
    hparams = OmegaConf.create({"embed_dim": 4, "ddconfig": {"ch_mult": [1, 2], "dropout": 0.0}})
    return {
        "epoch": 3,
        "global_step": 1200,
        "pytorch-lightning_version": "1.0.8",
        "state_dict": state_dict,
        "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.25)}, "object": callback},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 4.5e-6}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"config": hparams, "scale": np.float64(1.5), "ids": np.arange(3), "tags": {"a"}},
        **extra,
    }


class RunsShell:
    """The classic pickle exploit: unpickling calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


class RunsSubprocess:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_lightning_checkpoint_returns_its_state_dict(tmp_path, zipfile_format):
    expected = tiny_state_dict()
    path = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(expected), path, _use_new_zipfile_serialization=zipfile_format)

    assert_same(read_state_dict(path), expected)


def test_bare_state_dict_in_a_ckpt(tmp_path):
    expected = tiny_state_dict()
    torch.save(expected, tmp_path / "bare.ckpt")
    assert_same(read_state_dict(tmp_path / "bare.ckpt"), expected)


@pytest.mark.parametrize("payload", [RunsShell, RunsEval, RunsSubprocess])
@pytest.mark.parametrize("zipfile_format", [True, False])
def test_malicious_ckpt_is_refused_and_nothing_runs(tmp_path, payload, zipfile_format):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    ckpt = lightning_checkpoint(tiny_state_dict())
    ckpt["hyper_parameters"]["innocent"] = payload(marker)  # hidden deep, after the tensors
    torch.save(ckpt, path, _use_new_zipfile_serialization=zipfile_format)

    with pytest.raises(UnsafeCheckpointError) as err:
        read_state_dict(path)

    assert str(path) in str(err.value)
    assert any(name in str(err.value) for name in ("posix.system", "builtins.eval", "subprocess.call"))
    assert not marker.exists()


def test_pt_with_custom_class_is_refused_by_weights_only(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "user.pt"
    torch.save({"w": torch.zeros(2), "extra": RunsShell(marker)}, path)

    with pytest.raises(WeightsError) as err:
        read_state_dict(path)

    assert "posix.system" in str(err.value) and "not a plain tensor file" in str(err.value)
    assert not marker.exists()


def test_pt_state_dict_loads(tmp_path):
    expected = tiny_state_dict()
    torch.save(expected, tmp_path / "model.bin")
    assert_same(read_state_dict(tmp_path / "model.bin"), expected)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_archive_is_refused_unread(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(WeightsError, match="TorchScript"):
        read_state_dict(path)


def test_safetensors_round_trip_and_conversion(tmp_path):
    expected = tiny_state_dict()
    ckpt = tmp_path / "last.ckpt"
    torch.save(lightning_checkpoint(expected), ckpt)

    out = convert_to_safetensors(ckpt, tmp_path / "model.safetensors")

    assert out.read_bytes()[:8] != b"PK\x03\x04"  # not a zip/pickle
    assert_same(read_state_dict(out), expected)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nope.ckpt")
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown checkpoint type"):
        read_state_dict(tmp_path / "weights.h5")
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="safetensors"):
        read_state_dict(tmp_path / "broken.safetensors")
