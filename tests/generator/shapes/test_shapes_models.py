"""The bundled shapes pair: verified, loaded strictly by the engine's own loaders, and it draws."""
import numpy as np
import pytest
import torch

from generator import GenerationConfig, Generation, weights
from generator.errors import WeightsError
from generator.models import ModelCache, load_clip, load_vqgan
from generator.shapes.checker import read_scene
from generator.weight_records import SHAPES_RECOMMENDED


@pytest.fixture(scope="module")
def shapes_models():
    return ModelCache("cpu")


@pytest.mark.parametrize("name", ["shapes", "shapes-clip", "shapes-robust", "shapes-judge"])
def test_bundled_weights_verify_without_download(name):
    record = weights.get(name)
    assert record.bundled and record.urls == () and record.sha256
    path = weights.path_for(name)
    assert path.is_file() and path.stat().st_size == record.size < 16_000_000
    assert weights.verify(name) == [(name, weights.OK)]
    assert weights.download(name, progress=False) == path


def test_bundled_file_with_a_wrong_hash_is_refused(monkeypatch):
    record = weights.get("shapes-judge")
    monkeypatch.setitem(weights.REGISTRY, "shapes-judge", record.__class__(**{**record.__dict__, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.path_for("shapes-judge")


def test_fp16_weights_load_into_fp32_models_through_the_strict_loaders():
    vqgan, sha256 = load_vqgan("shapes")
    assert sha256 == weights.get("shapes").sha256
    assert vqgan.config.quantizer == "cosine" and vqgan.config.norm == "none"
    assert all(p.dtype == torch.float32 for p in vqgan.parameters())
    for name in ("shapes-clip", "shapes-robust", "shapes-judge"):
        clip = load_clip(name)
        assert clip.name == name and clip.input_size == 64
        assert all(p.dtype == torch.float32 for p in clip.model.parameters())


def test_the_vqgans_name_as_clip_guides_with_every_clip_made_for_it():
    """`--clip shapes` is the pair's two CLIPs, each with the spec's weight; one model can't be both."""
    from generator.errors import ConfigError
    from generator.models import ModelCache

    clips = ModelCache("cpu").clips("shapes:2,shapes-judge")
    assert [(c.name, w) for c, w in clips] == [("shapes-clip", 2.0), ("shapes-robust", 2.0), ("shapes-judge", 1.0)]
    with pytest.raises(ConfigError, match="'shapes' names 2 CLIP models"):
        load_clip("shapes")


def test_a_red_square_comes_out_red(shapes_models):
    settings = {**SHAPES_RECOMMENDED, "steps": 20, "cutn": 4, "start_steps": 5}  # ~20 s on a busy 2-core CPU
    config = GenerationConfig.from_dict({**settings, "prompts": "a red square", "vqgan": "shapes",
                                         "clip": "shapes", "seed": 0})
    image = Generation(config, device="cpu", models=shapes_models).run()
    found = read_scene(image)
    assert found and found[0].colour == "red", found


def test_init_colour_starts_from_that_flat_colour_and_bad_values_are_refused(tmp_path):
    from generator import GenerationConfig
    from generator.engine import Generation
    from generator.errors import ConfigError

    config = GenerationConfig(prompts="a red square", vqgan="shapes", clip="shapes", width=64, height=64,
                              steps=1, init_colour="#808080")
    image = np.asarray(Generation(config, device="cpu").image()).astype(float)
    assert abs(image.mean() - 128) < 12 and image.std() < 12  # the shapes VQGAN reconstructs flat grey
    from PIL import Image

    Image.new("RGB", (64, 64), (40, 80, 225)).save(tmp_path / "blue.png")  # an init image wins over the colour
    image = np.asarray(Generation(config.replace(init_image=str(tmp_path / "blue.png")), device="cpu").image())
    assert image[..., 2].mean() - image[..., 0].mean() > 100
    for bad in ("808080", "#80808", "#gg8080", "grey"):
        with pytest.raises(ConfigError, match="init colour"):
            GenerationConfig(prompts="x", init_colour=bad).validate()


def test_the_judge_reads_clean_held_out_scenes():
    """The judge scores generated images, so it must read clean ones; measured when shipped: 100% on 200
    held-out scenes for retrieval and every attribute."""
    from generator.shapes.clip_eval import evaluate

    result = evaluate(load_clip("shapes-judge"), 60)
    assert all(result[k] >= 0.95 for k in ("retrieval_top1", "colour", "shape", "position", "size")), result
