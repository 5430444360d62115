"""`vqclip generate --variations/--seeds/--prompt-set` and `vqclip export`, end to end in a subprocess."""
import json

import numpy as np
import pytest
from PIL import Image

from generator.output import read_png_config
from tests.app.cli_helpers import TINY, vqclip


def test_variations_make_captioned_sheet_matching_the_images(tmp_path):
    result = vqclip("generate", "research computing team logo", *TINY, "--steps", 3, "--seed", 4,
                    "--variations", 3, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    *images, sheet = [line for line in result.stdout.splitlines() if line]
    assert len(images) == 3 and "-sheet-" in sheet
    assert [read_png_config(p).seed for p in images] == [4, 5, 6]
    record = json.loads(Image.open(sheet).text["vqclip:contact-sheet"])
    assert [(i["seed"], i["file"]) for i in record[0]["images"]] == [
        (read_png_config(p).seed, p.rsplit("/", 1)[-1]) for p in images]
    # each tile is its image: compare the sheet's tile to the image scaled to the tile size
    sheet_pixels = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
    for col, path in enumerate(images):
        tile = np.asarray(Image.open(path).convert("RGB").resize((192, 192), Image.LANCZOS)).astype(int)
        x = 8 + col * 200
        assert np.abs(sheet_pixels[8:200, x:x + 192] - tile).mean() < 1.0


def test_variations_as_one_batch_make_the_images_they_make_one_at_a_time(tmp_path):
    args = ["research computing team logo", *TINY, "--steps", 3, "--seed", 4, "--variations", 3]
    alone = vqclip("generate", *args, "--batch", 1, "--out", tmp_path / "alone")
    batched = vqclip("generate", *args, "--batch", 2, "--out", tmp_path / "batched")  # a batch of 2, then 1
    auto = vqclip("generate", *args, "--out", tmp_path / "auto")  # the default: all that fit in memory
    for run in (alone, batched, auto):
        assert run.returncode == 0, run.stderr
    assert "[1-2/3] batch" in batched.stderr and "[3/3] seed 6" in batched.stderr
    assert "[1-3/3] batch" in auto.stderr and "[1/3] seed 4" in alone.stderr
    a, b, c = ([line for line in r.stdout.splitlines() if line] for r in (alone, batched, auto))
    assert [p.rsplit("/", 1)[-1] for p in a] == [p.rsplit("/", 1)[-1] for p in b] == [
        p.rsplit("/", 1)[-1] for p in c]  # same names, same sheet
    for x, y, z in zip(a[:3], b[:3], c[:3]):
        assert read_png_config(x) == read_png_config(y) == read_png_config(z)
        for other in (y, z):
            diff = np.abs(np.asarray(Image.open(x)).astype(int) - np.asarray(Image.open(other)).astype(int))
            assert diff.max() <= 2  # rounding of a batched decode; see tests/generator/test_batch.py


def test_same_seeds_same_images_and_prompt_rows(tmp_path):
    args = [*TINY, "--steps", 2, "--seeds", "2,7", "--prompt-set", "a red logo | a blue emblem"]
    first = vqclip("generate", *args, "--out", tmp_path / "a")
    second = vqclip("generate", *args, "--out", tmp_path / "b")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a = sorted((tmp_path / "a").glob("*.png"))
    b = sorted((tmp_path / "b").glob("*.png"))
    assert len(a) == 5 and [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    sheet = next(p for p in a if "-sheet-" in p.name)
    rows = json.loads(Image.open(sheet).text["vqclip:contact-sheet"])
    assert [r["prompt"] for r in rows] == ["a red logo", "a blue emblem"]
    assert [[i["seed"] for i in r["images"]] for r in rows] == [[2, 7], [2, 7]]


@pytest.mark.parametrize("args,message", [
    (["--seeds", "5-2"], "runs backwards"),
    (["--seeds", "1,x"], "'x' is not a seed"),
    (["--variations", "0"], "at least 1"),
    (["--variations", "2", "--seeds", "1,2"], "not both"),
    (["--seeds", "1-100"], "more than 64"),
    (["--variations", "2", "--batch", "0"], "--batch must be at least 1, got 0"),
])
def test_bad_variation_options(tmp_path, args, message):
    result = vqclip("generate", "x", *TINY, "--steps", 1, *args, "--out", tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_command(tmp_path):
    made = vqclip("generate", "a logo", *TINY, "--steps", 2, "--out", tmp_path)
    png = made.stdout.strip()
    result = vqclip("export", png, "--svg", "--colors", 6, "--transparent", "--size", 128, "--out", tmp_path / "x")
    assert result.returncode == 0, result.stderr
    outputs = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert len(outputs) == 2 and outputs[0].endswith("-128px-resampled-transparent.png") and outputs[1].endswith(".svg")


@pytest.mark.parametrize("args,message", [
    (["--svg", "--colors", "70"], "between 2 and 64"),
    (["--size", "9000"], "export size must be between"),
    ([], "nothing to export"),
])
def test_export_bad_input_one_line_no_file(tmp_path, args, message):
    Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp_path / "a.png")
    result = vqclip("export", tmp_path / "a.png", *args, "--out", tmp_path / "x")
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_export_unreadable_image(tmp_path):
    (tmp_path / "a.png").write_text("not an image")
    result = vqclip("export", tmp_path / "a.png", "--svg")
    assert result.returncode == 2 and "cannot read image" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
