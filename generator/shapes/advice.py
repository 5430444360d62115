"""What to tell someone whose prompt asks the Shapes demo for more than it knows.

The demo's guides were trained on the shapes world's captions alone: a word outside `world.VOCABULARY`
("logo", "dog", "center") has an untrained, zeroed token row, so it steers nothing, and the demo draws one
thing far better than two. `prompt_advice` says so in a sentence the command line and the web UI show
beside the job; it never refuses a prompt.
"""
from __future__ import annotations

import re

from generator.errors import PromptError
from generator.prompts import parse_text_prompts

from .world import COLOURS, POSITION_PHRASES, SHAPES, SIZES, VOCABULARY

DEMO_VQGAN = "shapes"  # the registry's name of the demo's VQGAN: the advice is for its jobs alone
EXAMPLE = "a large red circle on the left"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def unknown_words(text: str) -> list[str]:
    """The words of `text` that no caption of the shapes world uses, in order, each once."""
    return list(dict.fromkeys(word for word in _words(text) if word not in VOCABULARY))


def names_two_things(text: str) -> bool:
    """Whether `text` names two or more shapes ("a red square on the left and a blue circle on the right")."""
    return sum(word in SHAPES for word in _words(text)) >= 2


def prompt_advice(prompts: str, vqgan: str = DEMO_VQGAN) -> str | None:
    """A sentence for a prompt spec (`"text:weight | ..."`) given to the Shapes demo, or None when it asks for
    what the demo draws best, or the job is not the demo's (`vqgan`). A spec that does not parse gets None:
    its own error says what is wrong."""
    if vqgan != DEMO_VQGAN:
        return None
    try:
        texts = [p.text for p in parse_text_prompts(prompts)]
    except PromptError:
        return None
    unknown = unknown_words(" ".join(texts))
    if unknown:
        shown = ", ".join(repr(w) for w in unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        return (f"The Shapes demo was never taught {shown}: it knows only sizes ({', '.join(SIZES)}), colours "
                f"({', '.join(COLOURS)}), shapes ({', '.join(SHAPES)}) and places "
                f"({', '.join(POSITION_PHRASES.values())}), as in \"{EXAMPLE}\"; other words steer nothing.")
    if any(names_two_things(t) for t in texts):
        return ("The Shapes demo draws one thing well but rarely two clean, separate shapes (README, "
                "\"Shapes demo\"); for the best result ask for one thing, as in \"" + EXAMPLE + "\".")
    return None
