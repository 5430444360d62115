"""Logo exports: SVG (checked by rendering it again), transparent background, resampling, contact sheets."""
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import resvg_py
from PIL import Image, ImageDraw

from generator import ConfigError, Generation
from generator.export import contact_sheet, export, to_svg, transparent_background
from generator.output import KEY_CONFIG, read_png_config, save_png
from tests.conftest import tiny_config

SVG = "{http://www.w3.org/2000/svg}"


def flat_logo(size=128) -> Image.Image:
    """A logo-like picture: flat shapes in a few colours on a light background."""
    image = Image.new("RGB", (size, size), (240, 240, 236))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 80, 80), fill=(200, 30, 30))
    draw.rectangle((70, 60, 110, 110), fill=(30, 60, 170))
    return image


def render(svg: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(resvg_py.svg_to_bytes(svg_string=svg)))).convert("RGBA"))


def mean_difference(svg: str, image: Image.Image) -> float:
    return float(np.abs(render(svg)[..., :3].astype(float) - np.asarray(image.convert("RGB")).astype(float)).mean())


def test_svg_parses_has_paths_and_renders_close_to_the_source():
    image = flat_logo()
    svg = to_svg(image, colors=8, settings_json='{"prompts": "a logo"}', title="a logo")
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}path")) >= 3
    assert json.loads(root.find(f"{SVG}metadata").text) == {"prompts": "a logo"}
    # Measured 0.72 of 255 for this image; flat colours should vectorise almost exactly.
    assert mean_difference(svg, image) < 3.0


def test_svg_of_a_generated_image_stays_close(models):
    gen = Generation(tiny_config(steps=3), device="cpu", models=models)
    image = gen.run()
    # The tiny models make noise, the worst case for 8 colours: measured 23-26 of 255; a broken
    # vectoriser (blank, shifted or wrong colours) gives 60 and more.
    assert mean_difference(to_svg(image, colors=8), image) < 40


def test_transparent_background_clears_the_border_keeps_the_subject():
    rgba = np.asarray(transparent_background(flat_logo()))
    border = np.concatenate([rgba[0], rgba[-1], rgba[:, 0], rgba[:, -1]])
    assert (border[:, 3] == 0).all()
    assert rgba[50, 50, 3] == 255 and rgba[90, 90, 3] == 255  # inside the circle and the square


def test_enclosed_background_colour_is_kept():
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((8, 8, 56, 56), outline=(0, 0, 0), width=4)  # a white hole inside a ring
    rgba = np.asarray(transparent_background(image))
    assert rgba[0, 0, 3] == 0 and rgba[32, 32, 3] == 255


def test_export_carries_settings_and_labels_resampling(models, tmp_path):
    gen = Generation(tiny_config(steps=2), device="cpu", models=models)
    gen.run()
    source = save_png(gen, tmp_path / "gen.png")
    paths = export(source, tmp_path / "out", svg=True, transparent=True, size=256, colors=6)
    names = sorted(p.name for p in paths)
    assert names == ["gen-256px-resampled-transparent.png", "gen-256px-resampled.svg"]
    png = tmp_path / "out" / "gen-256px-resampled-transparent.png"
    assert Image.open(png).size == (256, 256) and Image.open(png).mode == "RGBA"
    assert read_png_config(png) == gen.config
    assert "no learned upscaler" in Image.open(png).text["vqclip:resampled"]
    svg_meta = ET.parse(tmp_path / "out" / "gen-256px-resampled.svg").getroot().find(f"{SVG}metadata").text
    assert json.loads(svg_meta) == json.loads(Image.open(source).text[KEY_CONFIG])


def test_foreign_png_exports_without_settings(tmp_path):
    flat_logo().save(tmp_path / "plain.png")
    (svg,) = export(tmp_path / "plain.png", svg=True)
    assert ET.parse(svg).getroot().find(f"{SVG}metadata") is None


@pytest.mark.parametrize("kwargs,message", [
    (dict(svg=True, colors=1), "between 2 and 64"),
    (dict(svg=True, colors=65), "between 2 and 64"),
    (dict(size=100000), "export size must be between"),
    (dict(), "nothing to export"),
    (dict(transparent=True, tolerance=2.0), "tolerance"),
])
def test_bad_export_settings_write_nothing(tmp_path, kwargs, message):
    flat_logo().save(tmp_path / "a.png")
    with pytest.raises(ConfigError, match=message):
        export(tmp_path / "a.png", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_unreadable_image(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ConfigError, match="cannot read image"):
        export(tmp_path / "bad.png", svg=True)


def test_contact_sheet_layout():
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    sheet = contact_sheet([("a", [(1, red), (2, blue)]), ("b", [(1, blue), (2, red)])], tile=32)
    pixels = np.asarray(sheet)
    # tile (row 0, col 1) is blue, tile (row 1, col 1) is red: rows are prompts, columns are seeds
    first_row_y, second_row_y = 8 + 24 + 16, 8 + 24 + 32 + 22 + 8 + 24 + 16
    assert tuple(pixels[first_row_y, 8 + 40 + 16]) == (0, 0, 255)
    assert tuple(pixels[second_row_y, 8 + 40 + 16]) == (255, 0, 0)
