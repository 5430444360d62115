"""CLIP through open_clip: spec parsing and strict loading of open_clip state dicts."""
import pytest
import torch

from generator.clip import ClipSpec, build_clip, parse_clip_specs, spherical_distance
from generator.errors import ConfigError, WeightsError


def test_parse_specs(tmp_path):
    file = tmp_path / "w.safetensors"
    file.write_bytes(b"")
    assert parse_clip_specs("ViT-B-32/openai") == [ClipSpec("ViT-B-32/openai")]
    assert parse_clip_specs(f"ViT-B-32/openai, RN50/openai:0.5, ViT-B-16={file}:2") == [
        ClipSpec("ViT-B-32/openai"), ClipSpec("RN50/openai", 0.5), ClipSpec(f"ViT-B-16={file}", 2.0)]
    assert ClipSpec(f"ViT-B-16={file}").local_file == ("ViT-B-16", str(file))


@pytest.mark.parametrize("text,message", [
    ("", "expected NAME"), ("a,,b", "expected NAME"), ("tiny:0", "must be positive"),
    ("ViT-B-32=/no/file.bin", "no such file"),
])
def test_bad_specs(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_clip_specs(text)


def test_state_dict_round_trip_in_open_clip_layout():
    source = build_clip("vqclip-tiny", None, seed=7)
    state = {k: v.clone() for k, v in source.model.state_dict().items()}
    assert "visual.conv1.weight" in state and "token_embedding.weight" in state and "logit_scale" in state
    wrapped = {"state_dict": {"module." + k: v for k, v in state.items()}}  # as open_clip training saves it
    for checkpoint in (state, wrapped):
        loaded = build_clip("vqclip-tiny", checkpoint, seed=0)
        texts = ["a red square", "a blue circle"]
        assert torch.equal(loaded.encode_text(texts), source.encode_text(texts))


def test_seeded_builds_are_identical_and_seeds_differ():
    a, b, c = (build_clip("vqclip-tiny", None, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.encode_text(["x"]), b.encode_text(["x"]))
    assert not torch.equal(a.encode_text(["x"]), c.encode_text(["x"]))


def test_missing_and_unexpected_keys_are_named():
    state = build_clip("vqclip-tiny", None).model.state_dict()
    missing = {k: v for k, v in state.items() if k != "visual.proj"}
    with pytest.raises(WeightsError, match="lacks weight 'visual.proj'"):
        build_clip("vqclip-tiny", missing)
    with pytest.raises(WeightsError, match="unexpected weight 'extra.bias'"):
        build_clip("vqclip-tiny", {**state, "extra.bias": torch.zeros(1)})
    wrong = {**state, "visual.proj": torch.zeros(3, 3)}
    with pytest.raises(WeightsError, match="does not fit"):
        build_clip("vqclip-tiny", wrong)


def test_unknown_architecture():
    with pytest.raises(ConfigError, match="unknown CLIP architecture 'ViT-Q-99'"):
        build_clip("ViT-Q-99", None)


def test_spherical_distance():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    d = spherical_distance(a, b)[0]
    # 2 * (angle / 2)^2 for angles 0, pi/2, pi
    assert torch.allclose(d, torch.tensor([0.0, 2 * (torch.pi / 4) ** 2, 2 * (torch.pi / 2) ** 2]), atol=1e-5)
