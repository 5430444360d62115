"""Variations, the results grid, "use this seed", "vary this one" and exports: the web handlers without a browser,
on a SQLite store whose jobs are finished by hand with a drawn logo."""
from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw

from app.jobs import QUEUED, open_store
from app.logo import VARY_INIT_WEIGHT, variation_seeds
from app.web import form, models, results, uploads
from app.web.handlers import WebApp
from app.web.limits import Limits
from generator.output import KEY_CONFIG, png_bytes

SESSION = "0" * 32
OWNER = f"browser:{SESSION}"


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def app(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        yield WebApp(store, Limits(max_queued_per_user=4), tmp_path / "files")


@pytest.fixture
def warnings(monkeypatch):
    said = []
    monkeypatch.setattr("app.web.handlers.gr.Warning", lambda message, *a, **k: said.append(message))
    return said


def form_values(**overrides) -> list:
    values = {**form.defaults("tiny", "tiny", False), "prompt": "a red logo", "steps": 10, "seed": 5,
              "video": False, **overrides}
    return [values[f] for f in form.FIELDS]


def submit(app, variations=1, random_seeds=False, **overrides):
    return app.submit(SESSION, None, [], variations, random_seeds, *form_values(**overrides))


def logo_png(config: dict) -> bytes:
    """A red square on a white ground, with the job's settings in its text chunks, as a worker writes it."""
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle([20, 20, 43, 43], fill=(200, 20, 20))
    return png_bytes(image, {KEY_CONFIG: json.dumps(config)})


def finish_all(store) -> None:
    while (job := store.claim("test-worker", 60)) is not None:
        store.finish(job.id, "test-worker", logo_png(job.config))


def finished_job(app) -> int:
    current, _, _ = submit(app)
    finish_all(app.store)
    return current


def test_variations_queue_one_job_per_seed_as_a_group(app):
    current, notice, group = submit(app, variations=3)
    assert len(group) == 3 and current == group[0]
    assert [app.store.get(i).config["seed"] for i in group] == [5, 6, 7]
    assert all(app.store.get(i).state == QUEUED for i in group)
    assert "3 jobs queued" in notice and "seeds 5, 6, 7" in notice


def test_one_variation_is_one_job_as_before(app):
    current, notice, group = submit(app)
    assert group == [current] and f"Job #{current} queued" in notice


def test_the_shapes_demo_queues_a_prompt_it_was_not_taught_and_says_which_words_steer_nothing(app):
    shapes = form.defaults(*models.DEMO_PAIR, False)  # as the page offers the demo
    current, notice, _ = submit(app, **{**shapes, "prompt": "research computing team logo", "steps": 10, "seed": 5})
    assert app.store.get(current).state == QUEUED and "vq-ok" in notice
    assert "never taught 'research', 'computing', 'team', 'logo'" in html.unescape(notice)
    _, plain, _ = submit(app, **{**shapes, "prompt": "a large red circle on the left", "steps": 10, "seed": 5})
    assert "never taught" not in plain and "Shapes demo" not in plain
    _, tiny, _ = submit(app, prompt="research computing team logo")  # a real pair knows these words
    assert "never taught" not in tiny


def test_random_seeds_are_all_different(app):
    _, _, group = submit(app, variations=4, random_seeds=True)
    assert len({app.store.get(i).config["seed"] for i in group}) == 4


@pytest.mark.parametrize("variations,message", [
    (5, "5 variations would make 5 of your jobs waiting or running, over this server's limit of 4 per user; "
        "ask for at most 4"),
    (0, "Variations must be at least 1"),
    (1.5, "Variations must be a whole number"),
])
def test_bad_variation_counts_are_refused_with_a_message_and_queue_nothing(app, variations, message):
    current, notice, group = submit(app, variations=variations)
    assert message in html.unescape(notice) and "vq-error" in notice
    assert app.store.list() == []


def test_variations_count_the_jobs_already_waiting(app):
    submit(app, variations=3)
    _, notice, _ = submit(app, variations=2)
    assert "ask for at most 1" in notice and len(app.store.list()) == 3


def test_grid_shows_finished_tiles_captioned_by_seed_and_the_rest_in_a_note(app):
    _, _, group = submit(app, variations=3)
    job = app.store.claim("test-worker", 60)
    app.store.finish(job.id, "test-worker", logo_png(job.config))
    grid, ids, note, key = app.group_view(group, "")
    assert [caption for _, caption in grid["value"]] == ["seed 5"] and ids == [group[0]]
    assert note.startswith("1 of 3 done") and "seed 6: queued" in note
    assert "value" not in app.group_view(group, key)[0]  # unchanged: the grid is skipped, not sent again
    finish_all(app.store)
    grid, ids, note, _ = app.group_view(group, key)
    assert [caption for _, caption in grid["value"]] == ["seed 5", "seed 6", "seed 7"] and ids == group
    assert note == "3 of 3 done"


def test_use_this_seed_fills_the_form_with_that_job(app):
    _, _, group = submit(app, variations=2)
    finish_all(app.store)
    picked, info, panel = app.select_tile(group, SimpleNamespace(index=1))
    assert picked == group[1] and "| Seed | 6 |" in info and panel["visible"]
    filled = app.use_seed(picked)
    values = dict(zip(form.FIELDS, filled))
    assert values["seed"] == 6 and values["prompt"] == "a red logo" and filled[-1] == 1


def test_vary_this_one_starts_from_its_image_with_the_same_seed(app):
    picked = finished_job(app)
    filled = app.vary(picked)
    values = dict(zip(form.FIELDS, filled))
    init = filled[len(form.FIELDS)]
    assert values["seed"] == 5 and values["init_weight"] == VARY_INIT_WEIGHT and values["steps"] == 10
    assert uploads.path_of(init).is_file()
    config = form.to_config(values, init, [], app.limits, check_weights=True)  # it submits as it stands
    assert config["init_image"] == str(uploads.path_of(init)) and config["seed"] == 5


def test_svg_export_parses_with_paths_and_carries_the_settings(app):
    picked = finished_job(app)
    files, notice = app.export("svg", picked, 4, False, 0.12, 1024)
    assert [f.rsplit(".", 1)[1] for f in files] == ["svg"] and "Exported" in notice
    root = ET.parse(files[0]).getroot()
    assert root.findall(".//{http://www.w3.org/2000/svg}path")
    assert "a red logo" in root.find("{http://www.w3.org/2000/svg}metadata").text


def test_transparent_and_resized_exports(app):
    picked = finished_job(app)
    (png,), _ = app.export("transparent", picked, 8, True, 0.2, None)
    with Image.open(png) as image:
        assert image.mode == "RGBA" and image.getpixel((0, 0))[3] == 0 and image.getpixel((32, 32))[3] == 255
    (big,), _ = app.export("resized", picked, 8, False, 0.2, 256)
    with Image.open(big) as image:
        assert image.size == (256, 256) and "resampled" in big and "no added detail" in image.text["vqclip:resampled"]


@pytest.mark.parametrize("kind,colors,tolerance,size,message", [
    ("svg", 70, 0.1, None, "Colour count must be between 2 and 64, got 70"),
    ("svg", "many", 0.1, None, "Colour count must be a whole number"),
    ("transparent", 8, 1.5, None, "Tolerance must be between 0 and 1"),
    ("resized", 8, 0.1, 9000, "Export size must be between 16 and 4096"),
    ("resized", 8, 0.1, None, "Give the size to resample to"),
])
def test_bad_export_values_warn_and_make_no_file(app, warnings, kind, colors, tolerance, size, message):
    picked = finished_job(app)
    files, notice = app.export(kind, picked, colors, True, tolerance, size)
    assert files is None and message in html.unescape(notice) and warnings and message in warnings[0]
    assert not [p for p in app.files.folder.rglob("export-*/*")]


def test_export_without_a_finished_result_says_so(app, warnings):
    current, _, _ = submit(app)
    assert app.export("svg", current, 8, True, 0.1, None)[0] is None
    assert app.export("svg", None, 8, True, 0.1, None)[0] is None
    assert "Pick a finished result" in warnings[0]


def test_variation_seeds_are_shared_with_the_command_line():
    assert variation_seeds(10, 3) == [10, 11, 12]
    with pytest.raises(Exception, match="over the limit of 64"):
        variation_seeds(0, 65)
    assert results.EXPORT_HELP and results.VARY_HELP
