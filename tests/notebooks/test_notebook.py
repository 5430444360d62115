"""The Colab-style notebook runs top to bottom on the tiny pair, and its loop cell resumes after an interrupt."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
NOTEBOOK = NOTEBOOKS[0].parent / "vqgan_clip.ipynb"


@pytest.fixture
def tiny_env(monkeypatch):
    monkeypatch.setenv("VQCLIP_NOTEBOOK_MODELS", "tiny")


def client_for(nb, folder) -> NotebookClient:
    return NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})


def text_of(cell) -> str:
    return "".join(o.get("text", "") + json.dumps(o.get("data", {})) for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before committing"


def test_notebook_runs_top_to_bottom(tmp_path, tiny_env):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client_for(nb, tmp_path).execute()
    pngs = list((tmp_path / "outputs").glob("*.png"))
    pngs = [p for p in pngs if not p.stem.endswith("-transparent")]
    assert len(pngs) == 1 and pngs[0].with_suffix(".mp4").is_file() and pngs[0].with_suffix(".svg").is_file()
    assert (tmp_path / "outputs" / f"{pngs[0].stem}-transparent.png").is_file()
    from generator.output import read_png_config

    config = read_png_config(pngs[0])
    assert (config.prompts, config.vqgan, config.steps) == ("research computing team logo", "tiny", 20)
    outputs = "".join(text_of(c) for c in nb.cells)
    assert "image/png" in outputs and "step 20/20" in outputs


def test_interrupted_loop_cell_continues_when_rerun(tmp_path, tiny_env, monkeypatch):
    monkeypatch.setenv("VQCLIP_NOTEBOOK_STEPS", "100000")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    loop = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "for step in gen" in c.source)
    client = client_for(nb, tmp_path)
    progress = tmp_path / "steps_done"
    # A thread inside the kernel reports the steps finished, so the test interrupts only once the loop has
    # made progress, however loaded the machine is (cell outputs are not visible while the cell runs).
    watcher = nbformat.v4.new_code_cell(
        "import os, threading, time\n"
        "def _report():\n"
        "    while True:\n"
        f"        open({str(progress)!r} + '.tmp', 'w').write(str(gen.step_index))\n"
        f"        os.replace({str(progress)!r} + '.tmp', {str(progress)!r})\n"
        "        time.sleep(0.05)\n"
        "threading.Thread(target=_report, daemon=True).start()\n")
    probe = nbformat.v4.new_code_cell("print(gen.step_index, len(gen.loss_history))")
    nb.cells += [watcher, probe]

    def steps_done() -> int:
        return int(progress.read_text()) if progress.exists() else 0

    def interrupt_after(steps: int):
        """What the notebook's stop button does: SIGINT to the kernel, once the loop has reached `steps`."""
        deadline = time.monotonic() + 600
        while steps_done() < steps and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(client.km.provisioner.pid, signal.SIGINT)

    with client.setup_kernel():
        for index in range(loop):
            client.execute_cell(nb.cells[index], index)
        client.execute_cell(watcher, len(nb.cells) - 2)
        reached = [0]
        for _ in range(2):  # run the loop cell twice, interrupting it each time, 3 steps in
            target = reached[-1] + 3
            threading.Thread(target=interrupt_after, args=(target,)).start()
            with pytest.raises(CellExecutionError, match="KeyboardInterrupt"):
                client.execute_cell(nb.cells[loop], loop)
            client.execute_cell(probe, len(nb.cells) - 1)
            done, recorded = map(int, probe.outputs[0]["text"].split())
            assert done == recorded and done >= target  # every finished step is in the engine's history
            reached.append(done)
        # The second run carried on from where the first stopped rather than starting over.
        assert reached[2] > reached[1] > 0


def test_notebook_falls_back_to_the_shapes_demo_when_the_real_weights_cannot_be_obtained(tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_WEIGHTS_DIR", str(tmp_path / "empty-cache"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    fetch = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "fetch_weights(" in c.source)
    # Every download fails as it does offline (and a test never starts a real 1 GB download).
    offline = nbformat.v4.new_code_cell(
        "from generator import weights\n"
        "from generator.download import FetchError\n"
        "def _offline(name, **kwargs):\n"
        "    raise FetchError([(f'https://example.invalid/{name}', 'unreachable (no network)')])\n"
        "weights.download = _offline\n")
    short = nbformat.v4.new_code_cell("steps, display_every = 3, 1  # a short run for the test")
    nb.cells[fetch:fetch + 1] = [offline, nb.cells[fetch], short]
    client_for(nb, tmp_path).execute()
    said = text_of(nb.cells[fetch + 1])
    assert "could not be obtained" in said and "Falling back to the Shapes demo (works offline)" in said
    assert "NOT the real VQGAN and CLIP" in said and "recommended settings: 64x64, 50 steps" in said
    from generator import weights
    from generator.output import read_png_config

    (png,) = [p for p in (tmp_path / "outputs").glob("*.png") if not p.stem.endswith("-transparent")]
    config = read_png_config(png)
    preset = weights.get("shapes").recommended
    assert (config.vqgan, config.clip, config.steps) == ("shapes", "shapes", 3)
    assert (config.width, config.cutn, config.lr, config.augmentations) == (
        preset["width"], preset["cutn"], preset["lr"], preset["augmentations"])
    assert png.with_suffix(".svg").is_file()
