"""Shared fixtures: the tiny model pair (seeded random weights) and a shared model cache."""
import pytest

from generator import GenerationConfig, ModelCache


def tiny_config(**overrides) -> GenerationConfig:
    settings = dict(prompts="research computing team logo", vqgan="tiny", clip="tiny",
                    width=64, height=64, steps=10, seed=1, cutn=8)
    settings.update(overrides)
    return GenerationConfig.from_dict(settings)


@pytest.fixture(scope="session")
def models():
    """Models stay loaded across tests, as in the worker."""
    return ModelCache("cpu")
