"""What the Shapes demo tells a user whose prompt asks for more than it knows."""
import pytest

from generator.shapes.advice import names_two_things, prompt_advice, unknown_words
from generator.shapes.world import VOCABULARY, World


def test_the_vocabulary_is_every_word_the_worlds_captions_use_and_no_other():
    world = World("train", seed=2, relational=0.5)
    used = {w for i in range(2000) for w in world.scene(i).caption.split()}
    assert used == VOCABULARY


@pytest.mark.parametrize("prompt", ["a large red circle on the left", "A Red Square.", "a green star",
                                    "a small red square:1 | a blue circle:-0.5", "a picture of a white cross"])
def test_prompts_in_the_worlds_words_about_one_thing_get_no_advice(prompt):
    assert prompt_advice(prompt) is None


def test_words_outside_the_world_are_named_once_each_in_order():
    assert unknown_words("Research computing: team LOGO, team!") == ["research", "computing", "team", "logo"]
    advice = prompt_advice("research computing team logo | a red logo:0.5")
    assert advice.startswith("The Shapes demo was never taught 'research', 'computing', 'team', 'logo':")
    assert "in the centre" in advice and "star" in advice  # says what it does know
    many = prompt_advice(" ".join(f"w{c}" for c in "abcdefghijkl"))
    assert "'wh' and 4 more:" in many and "'wi'" not in many


def test_two_things_get_the_advice_to_ask_for_one():
    for prompt in ("a red square on the left and a blue circle on the right",
                   "a large blue square above a small yellow triangle"):
        assert names_two_things(prompt) and "rarely two" in prompt_advice(prompt)
    assert not names_two_things("a red square")


def test_a_prompt_that_does_not_parse_is_left_to_its_own_error():
    for bad in ("a red square:heavy", "", " | ", "a:b:c:d"):
        assert prompt_advice(bad) is None


def test_only_the_demos_jobs_get_advice():
    assert prompt_advice("research computing team logo", "vqgan_imagenet_f16_16384") is None
    assert prompt_advice("research computing team logo", "shapes") is not None
