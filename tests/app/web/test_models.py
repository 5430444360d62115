"""The web UI's model choices: the bundled shapes pair is offered as "Shapes demo (works offline)" and is the
default, with its recommended settings and an honest banner, when the real weights are absent (issue #8)."""
from __future__ import annotations

import pytest

from app.web import form, models
from app.web.limits import Limits
from generator import weights
from generator.config import GenerationConfig

DEMO = "Shapes demo (works offline)"


@pytest.fixture
def no_real_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_WEIGHTS_DIR", str(tmp_path / "empty-cache"))


def test_the_shapes_pair_is_labelled_as_the_demo():
    assert (DEMO, "shapes") in models.choices("vqgan")
    assert (DEMO, "shapes-clip") in models.choices("clip") and (DEMO, "shapes-robust") in models.choices("clip")
    assert all(DEMO not in label for label, name in models.choices("clip") if name == "shapes-judge")


def test_without_the_real_weights_the_demo_is_selected_with_its_settings(no_real_weights):
    vqgan, clip, real = models.default_pair()
    assert (vqgan, clip, real) == ("shapes", "shapes-clip,shapes-robust", False)
    start = form.defaults(vqgan, clip, real)
    preset = weights.get("shapes").recommended
    for key in ("width", "height", "steps", "cutn", "cut_pow", "lr", "augmentations"):
        assert start[key] == preset[key], key
    assert start["preset"] == "Tiny · 64×64 (quick test)" and start["clip"] == ["shapes-clip", "shapes-robust"]
    config = form.to_config({**start, "prompt": "a large blue circle on the left"}, None, None, Limits(),
                            check_weights=True)
    assert (config["vqgan"], config["clip"], config["lr"]) == ("shapes", "shapes-clip,shapes-robust", preset["lr"])
    assert config["init_colour"] == preset["init_colour"] == "#808080"  # the demo's flat grey start
    assert config["augment_padding"] == preset["augment_padding"] == "border"  # no black cutout corners
    assert (config["starts"], config["start_steps"]) == (preset["starts"], preset["start_steps"]) == (4, 20)


def test_the_banner_says_it_is_the_demo_and_how_to_get_the_real_models(no_real_weights):
    text = models.banner(False, "shapes")
    real = GenerationConfig()
    assert DEMO in text and "cannot draw anything else" in text
    assert f"vqclip weights download {real.vqgan}" in text and f"vqclip weights download {real.clip}" in text
    assert "tiny test models" in models.banner(False, "tiny")


def test_with_the_real_weights_present_they_are_the_default(monkeypatch):
    monkeypatch.setattr(models, "state", lambda name: weights.OK)
    real = GenerationConfig()
    assert models.default_pair() == (real.vqgan, real.clip, True)
    assert models.banner(True) == ""
    start = form.defaults(real.vqgan, real.clip, True)
    assert (start["width"], start["steps"], start["lr"]) == (real.width, real.steps, real.lr)
