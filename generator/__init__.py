"""vqclip's engine: VQGAN+CLIP text-to-image generation.

Public API::

    from generator import GenerationConfig, Generation
    config = GenerationConfig(prompts="a red square", vqgan="tiny", clip="tiny", width=64, height=64)
    gen = Generation(config, device="cpu")
    for step in gen:          # one StepRecord per step: index, loss, losses, image()
        ...
    gen.image().save("out.png")

Names are imported on first use, so `import generator.errors` (the job store does) does not load torch.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "GenerationConfig": "config", "Generation": "engine", "StepRecord": "engine",
    "GenerationBatch": "batch", "batch_key": "batch",
    "ModelCache": "models", "resolve_device": "models",
    "VqclipError": "errors", "ConfigError": "errors", "PromptError": "errors", "WeightsError": "errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'generator' has no attribute {name!r}")
