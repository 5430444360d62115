import json

import pytest

from generator import ConfigError, GenerationConfig


def test_round_trip_through_json():
    config = GenerationConfig(prompts="a | b:-1", width=128, height=64, seed=5)
    assert GenerationConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("data,message", [
    ({"prompts": "x", "colour": "red"}, "unknown config key 'colour'"),
    ({"prompts": "x", "steps": "10"}, "'steps' must be int"),
    ({"prompts": "x", "steps": 1.5}, "'steps' must be int"),
    ({"prompts": "x", "steps": True}, "'steps' must be int"),
    ({"prompts": "x", "lr": "fast"}, "'lr' must be float"),
    ({"prompts": "x", "augmentations": "Af"}, "'augmentations' must be a list of str"),
    ({"prompts": "x", "steps": 0}, "steps must be positive"),
    ({"prompts": "x", "width": -64}, "width must be positive"),
    ({"prompts": "x", "lr": 0}, "lr must be a positive number"),
    ({"prompts": "x", "optimizer": "lion"}, "unknown optimizer 'lion'"),
    ({"prompts": "x", "augmentations": ["Zz"]}, "unknown augmentation 'Zz'"),
    ({"prompts": "x", "augment_padding": "wrap"}, "unknown augment padding 'wrap'"),
    ({"prompts": "x", "augment_noise": -0.1}, "augment_noise must be >= 0"),
    ({"prompts": "x", "init_image": "/no/such.png"}, "init image"),
    ({"prompts": "x", "clip": "tiny:-1"}, "weight must be positive"),
    ({"prompts": ""}, "prompt is empty"),
    ({"prompts": "cat:heavy"}, "weight 'heavy' is not a number"),
])
def test_strict_loading_names_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        GenerationConfig.from_dict(data)


def test_ints_accepted_for_floats():
    assert GenerationConfig.from_dict({"prompts": "x", "lr": 1}).lr == 1.0


def test_from_toml_and_json_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('prompts = "a red square"\nsteps = 7\naugmentations = ["Af"]\n')
    config = GenerationConfig.from_file(toml)
    assert (config.prompts, config.steps, config.augmentations) == ("a red square", 7, ["Af"])
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"prompts": "b", "seed": 3}))
    assert GenerationConfig.from_file(js).seed == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("prompts = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        GenerationConfig.from_file(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        GenerationConfig.from_file(tmp_path / "missing.json")
