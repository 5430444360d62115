"""CUDA paths, run where a GPU is (skipped elsewhere; CI has none): benchmarks/gpu.sh runs these on one."""
import pytest
import torch

from generator import Generation, acceleration
from generator.batch import GenerationBatch
from generator.cutouts import MakeCutouts, pool_boxes
from generator.models import ModelCache
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


@pytest.fixture(scope="module")
def cuda_models():
    return ModelCache(torch.device("cuda", 0))


def test_batched_cutouts_on_the_gpu_match_the_cpu_pooling():
    gen = torch.Generator().manual_seed(0)
    sizes = (torch.rand(16, generator=gen) * 96 + 64).floor()
    x0 = (torch.rand(16, generator=gen) * (160 - sizes + 1)).floor()
    y0 = (torch.rand(16, generator=gen) * (160 - sizes + 1)).floor()
    image = torch.rand(1, 3, 160, 160)
    expected = pool_boxes(image, sizes, x0, y0, 64, batched=False)
    torch.backends.cuda.matmul.allow_tf32 = False
    got = pool_boxes(image.cuda(), sizes, x0, y0, 64, batched=True)
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("compile_mode", ["off", "on"])
def test_step_has_no_host_sync(cuda_models, compile_mode):
    gen = Generation(tiny_config(steps=6, compile=compile_mode, precision="bf16"), device="cuda:0",
                     models=cuda_models)
    gen.step()  # the first step compiles (when on) and may allocate
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        records = [gen.step() for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [r.index for r in records] == [2, 3, 4] and all(r.loss == r.loss for r in records)
    assert gen.compiled == (compile_mode == "on")  # a compile that fell back to eager would pass unseen


def test_cuda_graph_mode_follows_the_default_compiled_trajectory(cuda_models, monkeypatch):
    config = tiny_config(steps=6, compile="on", precision="bf16")
    monkeypatch.setattr(acceleration, "MODE", None)  # inductor's default mode: no CUDA graphs
    default = [s.loss for s in Generation(config, device="cuda:0", models=cuda_models)]
    monkeypatch.setattr(acceleration, "MODE", "reduce-overhead")
    gen = Generation(config, device="cuda:0", models=cuda_models)
    graphs, previews = [], []
    for step in gen:
        graphs.append(step.loss)
        if step.index % 2:
            previews.append(step.image())  # a preview decode between steps, as the web UI makes
    assert gen.compiled and graphs == pytest.approx(default, rel=0.02)
    assert [p.size for p in previews] == [(64, 64)] * 3 and gen.image().size == (64, 64)


def test_batched_steps_on_the_gpu_match_steps_alone(cuda_models):
    configs = [tiny_config(steps=5, seed=s, prompts=p, precision="bf16", compile="on")
               for s, p in ((1, "a red circle"), (2, "a blue square"))]
    alone = [[s.loss for s in Generation(c, device="cuda:0", models=cuda_models)] for c in configs]
    gens = [Generation(c, device="cuda:0", models=cuda_models) for c in configs]
    GenerationBatch(gens).run()
    for gen, expected in zip(gens, alone):
        assert gen.compiled and gen.loss_history == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_trajectory_stays_near_the_cpu_float32_one(cuda_models, models, precision):
    config = tiny_config(steps=8, augmentations=[])
    cpu = [s.loss for s in Generation(config, device="cpu", models=models)]
    gpu = [s.loss for s in Generation(config.replace(precision=precision), device="cuda:0", models=cuda_models)]
    assert gpu == pytest.approx(cpu, rel=0.02)


def test_cutout_noise_is_drawn_on_the_device_reproducibly():
    image = torch.rand(1, 3, 64, 64, device="cuda")
    make = MakeCutouts(32, 8, augmentations=["Gn", "Af", "Er"])
    first = make(image, torch.Generator().manual_seed(1))
    again = make(image, torch.Generator().manual_seed(1))
    assert first.device.type == "cuda" and torch.equal(first, again)


def test_compiled_scopes_follow_the_same_trajectory(cuda_models, monkeypatch):
    """Scope "step" (one compiled function, one graph each way) against "parts" (decoder, CLIP, cutouts)."""
    config = tiny_config(steps=5, compile="on", precision="bf16", tv_weight=0.1)
    runs = {}
    for scope in ("parts", "step"):
        monkeypatch.setattr(acceleration, "SCOPE", scope)
        gen = Generation(config, device="cuda:0", models=cuda_models)
        runs[scope] = [s.loss for s in gen]
        assert gen.compiled
    assert runs["step"] == pytest.approx(runs["parts"], rel=0.02)


def test_several_starts_compiled_on_the_gpu_keep_the_eager_choice(cuda_models):
    config = tiny_config(steps=6, starts=3, start_steps=3, precision="fp32")
    eager = Generation(config.replace(compile="off"), device="cuda:0", models=cuda_models)
    expected = [s.loss for s in eager]
    gen = Generation(config.replace(compile="on"), device="cuda:0", models=cuda_models)
    got = [s.loss for s in gen]
    assert gen.compiled and gen.kept_start == eager.kept_start
    assert got == pytest.approx(expected, rel=1e-3)
