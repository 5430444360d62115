import math

import pytest

from generator.errors import PromptError
from generator.prompts import (ImagePrompt, NoisePrompt, TextPrompt, parse_image_prompt, parse_noise_prompt,
                               parse_text_prompts)

GOOD = [
    ("a red circle", [TextPrompt("a red circle")]),
    ("a:1 | b:-0.5 | c:1:0.9", [TextPrompt("a"), TextPrompt("b", -0.5), TextPrompt("c", 1.0, 0.9)]),
    ("  spaced  :  2  ", [TextPrompt("spaced", 2.0)]),
    ("sci:1e-1", [TextPrompt("sci", 0.1)]),
    ("time\\: 12 \\| noon", [TextPrompt("time: 12 | noon")]),
    ("x:1:-inf", [TextPrompt("x", 1.0, -math.inf)]),
]

BAD = [
    ("", "empty"),
    ("   ", "empty"),
    ("cat:heavy", "weight 'heavy' is not a number"),
    ("cat:1:soon", "stop 'soon' is not a number"),
    ("a:1:2:3", "3 colons"),
    (":1", "has no text"),
    ("a || b", "has no text"),
    ("a:inf", "finite"),
]


@pytest.mark.parametrize("spec,expected", GOOD)
def test_text_prompts_parse(spec, expected):
    assert parse_text_prompts(spec) == expected


@pytest.mark.parametrize("spec,message", BAD)
def test_bad_text_prompts_name_the_problem(spec, message):
    with pytest.raises(PromptError, match=message.replace("|", r"\|")):
        parse_text_prompts(spec)


def test_bad_part_is_named():
    with pytest.raises(PromptError) as err:
        parse_text_prompts("good:1 | bad:x | fine")
    assert "'bad:x'" in str(err.value)


def test_image_prompt(tmp_path):
    path = tmp_path / "a:b.png"  # a colon inside the path is kept
    path.write_bytes(b"")
    assert parse_image_prompt(f"{path}:0.5") == ImagePrompt(str(path), 0.5)
    assert parse_image_prompt(f"{path}:2:0.1") == ImagePrompt(str(path), 2.0, 0.1)
    assert parse_image_prompt(str(path)) == ImagePrompt(str(path))
    with pytest.raises(PromptError, match="no such file"):
        parse_image_prompt(str(tmp_path / "missing.png") + ":1")


@pytest.mark.parametrize("spec,expected", [("7:0.5", NoisePrompt(7, 0.5)), ("0:-1", NoisePrompt(0, -1.0))])
def test_noise_prompt(spec, expected):
    assert parse_noise_prompt(spec) == expected


@pytest.mark.parametrize("spec", ["7", "x:1", "1:y", "1:2:3", "-1:1"])
def test_bad_noise_prompt(spec):
    with pytest.raises(PromptError, match="noise prompt"):
        parse_noise_prompt(spec)
