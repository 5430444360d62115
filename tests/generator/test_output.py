"""Outputs carry their settings, and are written whole or not at all."""
import os

import imageio_ffmpeg
import pytest
from PIL import Image

from generator import ConfigError, Generation
from generator.output import (KEY_MODELS, atomic_write, output_name, read_png_config, read_png_metadata,
                              save_png, save_video)
from tests.conftest import tiny_config


def test_png_carries_config_models_and_version(models, tmp_path):
    config = tiny_config(steps=2, prompts="a:1 | b:-0.5")
    gen = Generation(config, device="cpu", models=models)
    gen.run()
    path = save_png(gen, tmp_path / "out.png")
    assert read_png_config(path) == config
    text = read_png_metadata(path)
    assert text["vqclip:version"] and text["vqclip:seed"] == "1"
    assert '"name": "tiny"' in text[KEY_MODELS] and len(gen.vqgan.sha256) == 64
    assert Image.open(path).size == (64, 64)


def test_foreign_png_has_no_settings(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(ConfigError, match="carries no vqclip settings"):
        read_png_config(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(TypeError):
        atomic_write(target, object())  # writing fails midway
    assert os.listdir(tmp_path) == []
    atomic_write(target, b"data")
    assert target.read_bytes() == b"data" and os.listdir(tmp_path) == ["out.bin"]


def test_output_name_is_stable_and_setting_sensitive():
    a, b = tiny_config(), tiny_config(steps=11)
    assert output_name(a) == output_name(tiny_config())
    assert output_name(a) != output_name(b)
    assert output_name(a).startswith("research-computing-team-logo-s1-")


def test_timelapse_video(models, tmp_path):
    gen = Generation(tiny_config(steps=6, save_every=2), device="cpu", models=models)
    gen.run()
    assert len(gen.frames) == 3
    path = save_video(gen.frames, tmp_path / "t.mp4")
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (64, 64) and sum(1 for _ in reader) == 3
    with pytest.raises(ConfigError, match="no frames"):
        save_video([], tmp_path / "empty.mp4")
