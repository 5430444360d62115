"""`vqclip generate` and `vqclip batch`, end to end in a subprocess on the tiny pair."""
import signal
import time

import pytest

from generator.output import read_png_config, read_png_metadata
from tests.app.cli_helpers import TINY, popen, vqclip


def pngs(folder):
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_generate_then_from_png_reproduces_the_bytes(tmp_path):
    first = vqclip("generate", "research computing team logo", *TINY, "--steps", 12, "--seed", 1, "--out", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    (path,) = pngs(tmp_path / "a")
    assert first.stdout.strip() == str(path)
    assert "12/12" in first.stderr  # the progress bar reached the end
    config = read_png_config(path)
    assert (config.prompts, config.steps, config.seed, config.width, config.cutn) == (
        "research computing team logo", 12, 1, 64, 8)
    again = vqclip("generate", "--from-png", path, "--device", "cpu", "--out", tmp_path / "b")
    assert again.returncode == 0, again.stderr
    (copy,) = pngs(tmp_path / "b")
    assert copy.read_bytes() == path.read_bytes()


def test_flags_override_config_file_and_video(tmp_path):
    settings = tmp_path / "s.toml"
    settings.write_text('prompts = "a green star"\nsteps = 50\nseed = 9\nvqgan = "tiny"\nclip = "tiny"\n'
                        'width = 64\nheight = 64\ncutn = 4\n')
    result = vqclip("generate", "--config", settings, "--steps", 4, "--save-every", 2, "--video",
                    "--device", "cpu", "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    (path,) = pngs(tmp_path / "o")
    config = read_png_config(path)
    assert (config.prompts, config.steps, config.seed) == ("a green star", 4, 9)
    assert path.with_suffix(".mp4").stat().st_size > 0
    assert len(list((tmp_path / "o" / f"{path.stem}_frames").glob("*.png"))) == 2


def test_batch_reports_bad_line_and_rerun_skips_done(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# logos to try\na red square\n\ncat:heavy\na blue circle:1 | blurry:-0.5\n")
    out = tmp_path / "out"
    result = vqclip("batch", prompts, *TINY, "--steps", 3, "--out", out)
    assert result.returncode == 1
    assert f"{prompts}:4" in result.stderr and "weight 'heavy' is not a number" in result.stderr
    assert "2 made, 0 already done, 1 failed" in result.stderr
    made = pngs(out)
    assert sorted(read_png_config(p).prompts for p in made) == ["a blue circle:1 | blurry:-0.5", "a red square"]
    rerun = vqclip("batch", prompts, *TINY, "--steps", 3, "--out", out)
    assert rerun.returncode == 1 and "0 made, 2 already done, 1 failed" in rerun.stderr
    assert pngs(out) == made


def test_batch_of_good_prompts_exits_zero(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a yellow triangle\n")
    result = vqclip("batch", prompts, *TINY, "--steps", 2, "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert len(pngs(tmp_path / "o")) == 1


BAD_INPUTS = [
    (["generate", "", *TINY], "the prompt is empty"),
    (["generate", "x", *TINY, "--size", "60", "62"], "not a multiple of 4"),
    (["generate", "x", *TINY, "--steps", "0"], "steps must be positive"),
    (["generate", "x", *TINY, "--vqgan", "no_such_model"], "unknown VQGAN 'no_such_model'"),
    (["generate", "x", *TINY, "--clip", "NoSuchClip/none"], "unknown CLIP model 'NoSuchClip/none'"),
    (["generate", "x", *TINY, "--init-image", "/no/such/file.png"], "init image '/no/such/file.png' does not exist"),
    (["generate", "x", *TINY, "--image-prompt", "/no/such.png:1"], "no such file"),
    (["generate", "x", *TINY, "--config", "/no/such.toml"], "cannot read config file"),
    (["generate", "a cat:heavy", *TINY], "weight 'heavy' is not a number"),
    (["generate", "x", *TINY, "--noise-prompt", "1:lots"], "weight 'lots' is not a number"),
    (["generate", "x", *TINY, "--device", "cuda:7"], "cuda:7"),
    (["batch", "/no/such/prompts.txt", *TINY], "cannot read prompt file"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_no_file(tmp_path, args, message):
    out = tmp_path / "out"
    result = vqclip(*args, "--out", out)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert pngs(out) == []


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = vqclip("generate", "x", *TINY, "--steps", 1, "--out", blocker / "sub")
    assert result.returncode == 2 and "is not writable" in result.stderr and "Traceback" not in result.stderr


def test_interrupt_leaves_no_partial_file(tmp_path):
    out = tmp_path / "out"
    proc = popen("generate", "slow", *TINY, "--steps", 100000, "--out", out)
    deadline = time.time() + 120
    buffer = ""
    while "step/s" not in buffer and time.time() < deadline:  # wait until the loop is running
        buffer += proc.stderr.read(64)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists() or list(out.iterdir()) == []


def test_precision_and_decoder_checkpointing_are_settings_recorded_in_the_png(tmp_path):
    result = vqclip("generate", "a red circle", *TINY, "--steps", 2, "--precision", "bf16",
                    "--checkpoint-decoder", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    (path,) = pngs(tmp_path)
    config = read_png_config(path)
    assert (config.precision, config.checkpoint_decoder) == ("bf16", True)
    assert read_png_metadata(path)["vqclip:precision"] == "bf16"


def test_starts_are_settings_recorded_in_the_png_and_rerun_to_the_same_bytes(tmp_path):
    result = vqclip("generate", "a red circle", *TINY, "--steps", 4, "--starts", 3, "--start-steps", 2,
                    "--out", tmp_path / "a")
    assert result.returncode == 0, result.stderr
    (path,) = pngs(tmp_path / "a")
    config = read_png_config(path)
    assert (config.starts, config.start_steps) == (3, 2)
    again = vqclip("generate", "--from-png", path, "--device", "cpu", "--out", tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert pngs(tmp_path / "b")[0].read_bytes() == path.read_bytes()
    bad = vqclip("generate", "a red circle", *TINY, "--starts", 0, "--out", tmp_path / "c")
    assert bad.returncode == 2 and "starts must be positive" in bad.stderr and not pngs(tmp_path / "c")


def test_shapes_pair_brings_its_recommended_settings_and_flags_still_win(tmp_path):
    from generator.weights import recommended_settings

    preset = recommended_settings("shapes")
    result = vqclip("generate", "a red square", "--vqgan", "shapes", "--clip", "shapes", "--steps", 2,
                    "--seed", 3, "--device", "cpu", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "recommended settings apply where not given" in result.stderr
    config = read_png_config(*pngs(tmp_path))
    assert (config.width, config.height, config.cutn, config.lr) == (
        preset["width"], preset["height"], preset["cutn"], preset["lr"])
    assert config.augmentations == preset["augmentations"]
    assert (config.steps, config.seed) == (2, 3)  # given flags override the preset
    other = vqclip("generate", "a red square", *TINY, "--steps", 1, "--out", tmp_path / "tiny")
    assert "recommended" not in other.stderr and read_png_config(*pngs(tmp_path / "tiny")).cutn == 8
    assert "never taught" not in result.stderr and "never taught" not in other.stderr


def test_the_shapes_demo_says_which_words_of_a_prompt_it_was_never_taught_and_still_draws(tmp_path):
    result = vqclip("generate", "a purple dog in the center", "--vqgan", "shapes", "--clip", "shapes", "--steps", 1,
                    "--starts", 1, "--device", "cpu", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(pngs(tmp_path)) == 1
    assert result.stderr.count("The Shapes demo was never taught 'dog', 'center'") == 1
