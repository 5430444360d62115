"""The benchmark scripts run (on the tiny pair, seconds): a GPU lease is too short to find a broken one."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_step_benchmark_times_engine_and_baseline_and_profiles():
    out = run("benchmarks/step.py", "--tiny", "--warmup", "0", "--repeats", "1", "--pipelined", "2", "--profile", "1",
              "--compile-scope", "parts")
    assert "engine / baseline: wall" in out
    assert "engine pipelined: 2 steps in" in out
    assert "profile of 1 steps: wall" in out and "aten::" in out  # the profile's table of operations


def test_batching_benchmark_compares_and_profiles():
    out = run("benchmarks/batching.py", "--tiny", "--steps", "1", "--jobs", "2", "--rounds", "1", "--profile", "1")
    assert "largest loss difference alone vs batched" in out
    assert "batched / one at a time:" in out
    assert "profile of 1 steps of 2 jobs batched" in out


def test_gpu_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")], check=True)


def _quality():
    import importlib.util

    spec = importlib.util.spec_from_file_location("quality_benchmark", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(out: str, preset: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(f"| {preset} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_quality_benchmark_reads_clean_one_and_two_shape_scenes_right_and_a_swapped_one_wrong(tmp_path):
    """--rescore judges saved images: clean scenes of the prompts score 100% on the checker's colour, shape
    and position; a two-shape scene with its things' colours swapped scores 0% colour."""
    from generator.shapes.world import Thing, render

    quality = _quality()
    for things in (1, 2):
        good, swapped = tmp_path / f"good{things}", tmp_path / f"swapped{things}"
        good.mkdir(), swapped.mkdir()
        for p, scene in enumerate(quality.prompts(4, "heldout", things)):
            assert len(scene) == things and len(set(t.position for t in scene)) == things
            render(list(scene), (120, 120, 120)).save(good / f"shapes_{p:02d}_0.png")
            if things == 2:
                a, b = scene
                swap = [Thing(b.colour, a.shape, a.size, a.position), Thing(a.colour, b.shape, b.size, b.position)]
                render(swap, (120, 120, 120)).save(swapped / f"shapes_{p:02d}_0.png")
        args = ("benchmarks/quality.py", "--prompts", "4", "--seeds", "1", "--presets", "shapes",
                "--things", str(things))
        row = _row(run(*args, "--rescore", str(good)), "shapes")
        assert row[2:5] == ["100%", "100%", "100%"]  # checker colour, shape, position
        if things == 1:
            assert float(row[13]) > 0.9  # shape IoU with the asked template
        else:
            assert row[13] == "-"  # graded for one thing only
            assert [a.colour != b.colour for a, b in quality.prompts(4, "heldout", 2)] == [True] * 4
            assert _row(run(*args, "--rescore", str(swapped)), "shapes")[2] == "0%"
            # worded "A above B": the same things, so the same clean images score the same
            out = run(*args, "--relational", "--rescore", str(good))
            assert any(f" {w} " in out.splitlines()[0] for w in ("above", "below", "to the left of", "to the right of"))
            assert _row(out, "shapes")[2:5] == ["100%", "100%", "100%"]


def test_quality_benchmark_generates_a_two_shape_prompt_and_names_captions_differing_in_one_thing():
    quality = _quality()
    scene = quality.prompts(1, "heldout", 2)[0]
    captions = quality.scene_variants(scene, 1, "shape")
    assert captions[0] == quality.full_caption(scene) and len(captions) == 5 and len(set(captions)) == 5
    assert all(c.split(" and ")[0] == quality.full_caption(scene[:1]) for c in captions)
    assert quality.prompt_text(scene, " | ") == captions[0].replace(" and ", " | ")
    out = run("benchmarks/quality.py", "--prompts", "1", "--seeds", "1", "--presets", "shapes", "--things", "2",
              "--steps", "2", "--set", "starts=1", "--join", " | ")
    assert " | " in out.splitlines()[0] and float(_row(out, "shapes")[-1]) > 0  # seconds per image
    assert quality.prompt_text(scene, relational=True) == quality.relational_caption(scene)
    done = subprocess.run([sys.executable, "benchmarks/quality.py", "--relational"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and "--relational words two-shape prompts: add --things 2" in done.stderr


def test_quality_benchmark_judges_your_own_prompts_file_and_names_a_line_it_cannot_read(tmp_path):
    """--prompts-file: the clean scenes of a user's captions score 100% (checker and the named judge); a
    caption outside the scene grammar stops the run before any model loads, naming file, line and word, and a
    judge that will not load is named without a traceback."""
    from generator.shapes.world import parse_caption, render

    captions = ["a large red circle on the left", "# a comment", "", "a small white star at the top",
                "a large purple cross at the bottom and a small green square at the top",
                "a small blue square to the left of a large yellow triangle"]
    (tmp_path / "mine.txt").write_text("\n".join(captions) + "\n")
    good = tmp_path / "good"
    good.mkdir()
    for p, caption in enumerate(c for c in captions if c and not c.startswith("#")):
        render(list(parse_caption(caption)), (120, 120, 120)).save(good / f"shapes_{p:02d}_0.png")
    judge = "vqclip-shapes-judge-rn=generator/pretrained/shapes/clip_shapes_judge.safetensors"
    out = run("benchmarks/quality.py", "--prompts-file", str(tmp_path / "mine.txt"), "--seeds", "1",
              "--presets", "shapes", "--judge", judge, "--rescore", str(good))
    assert out.startswith(f"4 {tmp_path / 'mine.txt'} prompts") and judge in out.splitlines()[0]
    row = _row(out, "shapes")
    assert row[2:5] == ["100%", "100%", "100%"] and row[7:10] == ["100%", "100%", "100%"]  # checker, judge

    (tmp_path / "bad.txt").write_text("a large red circle on the left\na large pink circle on the left\n")
    missing = tmp_path / "no_judge.safetensors"  # a judge that would fail to load, were it loaded first
    done = subprocess.run([sys.executable, "benchmarks/quality.py", "--prompts-file", str(tmp_path / "bad.txt"),
                           "--judge", f"vqclip-shapes-judge-rn={missing}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and f"{tmp_path / 'bad.txt'}:2: " in done.stderr and "'pink'" in done.stderr
    assert "no_judge" not in done.stderr
    done = subprocess.run([sys.executable, "benchmarks/quality.py", "--prompts-file", str(tmp_path / "mine.txt"),
                           "--judge", f"vqclip-shapes-judge-rn={missing}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and f"no such file '{missing}'" in done.stderr and "Traceback" not in done.stderr
