"""The from-scratch recipe for the shapes models (generator/shapes/reproduce.py)."""
import pytest

from generator.shapes import reproduce
from generator.shapes.reproduce import STAGES, Stage, command, finished, run, selected


def test_every_stage_is_a_fixed_step_seeded_run_that_reads_no_bundled_model(tmp_path):
    for stage in STAGES:
        cmd = command(stage, tmp_path)
        assert ("--steps" in cmd if stage.model else "--n" in cmd) and "--seed" in cmd and "--minutes" not in cmd
        assert not any("pretrained" in part for part in cmd)
        if "--vqgan" in cmd:  # the loops draw with the recipe's own VQGAN
            assert cmd[cmd.index("--vqgan") + 1] == str(tmp_path / "vqgan" / "vqgan_shapes.safetensors")
        negatives = cmd[cmd.index("--negatives") + 1].split(",") if "--negatives" in cmd else []
        if "vqgan" in negatives:
            assert "--vqgan" in cmd  # decoded by the recipe's VQGAN (above), never the bundled default
        target = tmp_path / stage.name if stage.model else tmp_path / stage.name / stage.weights
        assert cmd[cmd.index("--out") + 1] == str(target)
    robust = command(reproduce.BY_NAME["robust"], tmp_path)
    assert robust[robust.index("--init") + 1] == str(tmp_path / "clip-tune" / "clip_shapes.safetensors")


def test_the_guides_learn_from_the_loops_of_the_recipes_own_models_and_only_models_are_measured(tmp_path):
    loops = [s for s in STAGES if not s.model]
    assert [s.module for s in loops] == ["generator.shapes.loop_negatives"] * 4
    files = {s.name: str(tmp_path / s.name / s.weights) for s in loops}
    commands = {s.name: command(s, tmp_path) for s in loops}
    drawn_by = {"loops-1": ("clip-more", "robust"), "loops-2": ("clip-more", "robust"),
                "loops-3": ("clip-pairs", "robust-pairs"), "loops-4": ("clip-pairs", "robust-pairs")}
    for name, cmd in commands.items():  # each round is drawn by the guides the round before it trained
        assert cmd[cmd.index("--clip") + 1] == ",".join(f"vqclip-shapes={tmp_path / n / 'clip_shapes.safetensors'}"
                                                        for n in drawn_by[name])
        assert set(drawn_by[name]) <= set(reproduce.BY_NAME[name].needs)
    assert len({cmd[cmd.index("--seed") + 1] for cmd in commands.values()}) == 4
    reads = {"clip-pairs": ["loops-1", "loops-2"], "robust-pairs": ["loops-1", "loops-2"],
             "clip-pairs-2": ["loops-1", "loops-2", "loops-3", "loops-4"],
             "robust-pairs-2": ["loops-1", "loops-2", "loops-3", "loops-4"],
             "clip-path": ["loops-1", "loops-2", "loops-3", "loops-4"]}
    for name, used in reads.items():
        stage = reproduce.BY_NAME[name]
        cmd = command(stage, tmp_path)
        at = cmd.index("--loop-negatives")
        assert cmd[at + 1:at + 1 + len(used)] == [files[n] for n in used] and cmd[at + 1 + len(used)] == "--pair-weight"
        assert float(cmd[cmd.index("--pair-weight") + 1]) > 0 and set(used) <= set(stage.needs)
    for name, start in (("clip-pairs-2", "clip-pairs"), ("robust-pairs-2", "robust-pairs"), ("clip-path", "clip-pairs-2")):
        cmd = command(reproduce.BY_NAME[name], tmp_path)
        assert cmd[cmd.index("--init") + 1] == str(tmp_path / start / "clip_shapes.safetensors")
    # the shipped guides are measured beside the last stages, not beside the ones they start from
    assert {s.name: s.bundled for s in STAGES if s.bundled and s.arch == "vqclip-shapes"} == {
        "clip-path": "clip_shapes.safetensors", "robust-pairs-2": "clip_shapes_robust.safetensors"}
    path = command(reproduce.BY_NAME["clip-path"], tmp_path)  # only the last standard guide learns the way in
    assert float(path[path.index("--path-weight") + 1]) > 0
    assert [s.name for s in STAGES if "--path-weight" in s.args] == ["clip-path"]
    assert float(path[path.index("--tint-weight") + 1]) > 0  # and its faint fades the colour's way round
    assert [s.name for s in STAGES if "--tint-weight" in s.args] == ["clip-path"]
    assert reproduce.measure(loops, tmp_path)[2:] == []


def test_a_stage_brings_the_stages_it_needs_and_unknown_names_are_refused():
    assert [s.name for s in selected(["robust"])] == ["clip", "clip-tune", "robust"]
    assert [s.name for s in selected(["loops-1"])] == ["vqgan", "clip", "clip-tune", "clip-more", "robust", "loops-1"]
    assert [s.name for s in selected(["judge", "vqgan"])] == ["vqgan", "judge"]
    assert [s.name for s in selected(None)] == [s.name for s in STAGES]
    with pytest.raises(SystemExit, match="unknown stage.*'vqgn'"):
        selected(["vqgn"])


def _tiny_vqgan(name: str, steps: str) -> Stage:
    args = ("--steps", steps, "--batch", "2", "--crop", "16", "--seed", "0")
    return Stage(name, "generator.shapes.train_vqgan", args, "vqgan_shapes.safetensors", "vqgan_shapes.safetensors")


def test_a_finished_stage_is_marked_kept_on_a_rerun_and_measured_beside_the_bundled_model(tmp_path, capsys):
    stage = _tiny_vqgan("vqgan", "2")
    run([stage], tmp_path, jobs=1)
    weights = tmp_path / "vqgan" / "vqgan_shapes.safetensors"
    assert weights.exists() and finished(stage, tmp_path)
    assert "held-out:" in (tmp_path / "vqgan.log").read_text()
    stamp = weights.stat().st_mtime_ns
    run([stage], tmp_path, jobs=1)  # the same command again: kept, not retrained
    assert weights.stat().st_mtime_ns == stamp and "already trained" in capsys.readouterr().out
    assert not finished(_tiny_vqgan("vqgan", "3"), tmp_path)  # another command is not that stage
    rows = reproduce.measure([stage], tmp_path)
    assert rows[2].startswith("| vqgan, this recipe | ") and rows[3].startswith("| vqgan, bundled | ")
    bundled_psnr = float(rows[3].split("|")[2].split()[0])
    assert bundled_psnr > 30 > float(rows[2].split("|")[2].split()[0])  # two steps from scratch reconstruct nothing
    intermediate = Stage("vqgan", stage.module, stage.args, stage.weights, None)  # no bundled counterpart
    assert [r.split("|")[1].strip() for r in reproduce.measure([intermediate], tmp_path)[2:]] == ["vqgan, this recipe"]


def test_a_failing_stage_stops_the_run_names_its_log_and_leaves_no_marker(tmp_path):
    good, bad = _tiny_vqgan("a", "0"), _tiny_vqgan("b", "0")
    with pytest.raises(SystemExit, match=r"stage a failed .*a\.log"):
        run([good, bad], tmp_path, jobs=1)
    assert "steps must be at least 1" in (tmp_path / "a.log").read_text()
    assert not finished(good, tmp_path) and not (tmp_path / "b.log").exists()
