"""vqclip's engine: VQGAN+CLIP text-to-image generation.

Public API::

    from generator import GenerationConfig, Generation
    gen = Generation(GenerationConfig(prompts="a red square", vqgan="tiny", clip="tiny", width=64, height=64))
    for step in gen: ...
"""
__version__ = "0.1.0"

from .config import GenerationConfig  # noqa: E402
from .engine import Generation, StepRecord  # noqa: E402
from .errors import ConfigError, PromptError, VqclipError, WeightsError  # noqa: E402
from .models import ModelCache, resolve_device  # noqa: E402

__all__ = [
    "GenerationConfig", "Generation", "StepRecord", "ModelCache", "resolve_device",
    "VqclipError", "ConfigError", "PromptError", "WeightsError", "__version__",
]
