"""torch.compile and channels_last: same steps as eager NCHW, and a failed compile falls back to eager."""
import pytest
import torch

from generator import Generation, acceleration
from generator.models import ModelCache
from tests.conftest import tiny_config


def losses(gen):
    return [step.loss for step in gen]


# Equivalent kernels (compiled or eager, channels-last or contiguous) sum in other orders, and the order
# depends on the CPU: on an AMD EPYC the decoder's outputs differ by ~3e-6 and the losses by up to ~1e-4
# relative within three steps (Adam turns tiny gradient differences into full-size steps). A real
# difference in what is computed moves a loss by far more than 1e-3.
SAME = 1e-3


def test_auto_compiles_on_gpus_only_when_enough_steps_follow():
    cuda, cpu, pays = torch.device("cuda", 0), torch.device("cpu"), acceleration.COMPILE_PAYS_AFTER
    assert acceleration.resolve_compile("auto", cuda)  # a worker: job after job
    assert acceleration.resolve_compile("auto", cuda, pays)
    assert not acceleration.resolve_compile("auto", cuda, pays - 1)  # one CLI run starts at once
    assert not acceleration.resolve_compile("auto", cpu)
    assert acceleration.resolve_compile("on", cpu, 1)
    assert not acceleration.resolve_compile("off", cuda)


def test_front_ends_tell_the_engine_how_many_steps_follow(tmp_path, monkeypatch):
    """The worker expects job after job; the CLI's batch expects all its prompts' steps."""
    from app import cli
    from app.worker import Worker

    seen = []
    real = Generation.__init__

    def spy(self, config, device="auto", models=None, expected_steps=None):
        seen.append(expected_steps)
        real(self, config, device, models, expected_steps)

    monkeypatch.setattr(Generation, "__init__", spy)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green star\n")
    assert cli.main(["batch", str(prompts), "--vqgan", "tiny", "--clip", "tiny", "--size", "32", "32",
                     "--cutn", "2", "--steps", "2", "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    assert seen == [6, 6, 6]
    seen.clear()
    from app.jobs import SqlJobStore

    with SqlJobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as store:
        job_id = store.submit(tiny_config(steps=1, width=32, height=32, cutn=2).to_dict())
        gen = Worker(store, device="cpu", once=True).build(store.get(job_id))
    assert seen == [float("inf")] and not gen.compiled  # a worker expects job after job; the CPU stays eager


@pytest.mark.parametrize("scope", ["step", "parts"])
def test_compiled_step_traces_and_matches_eager(models, monkeypatch, scope):
    # The real torch.compile front end (dynamo tracing + AOTAutograd's forward/backward graphs), with the
    # backend that runs those graphs as they are: inductor's C++ code generation takes minutes on this CPU
    # (measured in benchmarks/RESULTS.md), far too long for the test suite. The counter tells how often
    # dynamo compiled: once per compiled function, not once per step.
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(acceleration, "BACKEND", counter)
    monkeypatch.setattr(acceleration, "SCOPE", scope)
    torch._dynamo.reset()
    # An init-image term whose weight changes every step, and smoothness: the terms the step adds around
    # the compiled function (scope "step") and inside it.
    config = tiny_config(steps=4, init_colour="#336699", init_weight=0.5, init_weight_decay_steps=3, tv_weight=0.2)
    eager_gen = Generation(config.replace(compile="off"), device="cpu", models=models)
    eager = [(s.loss, s.losses) for s in eager_gen]
    gen = Generation(config.replace(compile="on"), device="cpu", models=models)
    with_compile = [(s.loss, s.losses) for s in gen]
    assert gen.compiled  # no fallback happened
    assert [loss for loss, _ in with_compile] == pytest.approx([loss for loss, _ in eager], rel=SAME)
    assert [list(terms) for _, terms in with_compile] == [list(terms) for _, terms in eager]
    assert list(with_compile[0][1]) == ["research computing team logo", "init image", "smoothness"]
    # scope "step": one function (forward and backward); "parts": the decoder and the CLIP tower (the
    # cutouts' compiled transform runs on GPUs only: the CPU pools cutout by cutout)
    assert counter.frame_count == (1 if scope == "step" else 2)


def test_several_starts_compile_the_parts_then_the_step(models, monkeypatch):
    """Starts run on the compiled parts; once one start is kept, the step runs as one compiled function."""
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(acceleration, "BACKEND", counter)
    monkeypatch.setattr(acceleration, "SCOPE", "step")
    torch._dynamo.reset()
    config = tiny_config(steps=4, starts=2, start_steps=2)
    eager_gen = Generation(config.replace(compile="off"), device="cpu", models=models)
    eager = losses(eager_gen)
    gen = Generation(config.replace(compile="on"), device="cpu", models=models)
    assert losses(gen) == pytest.approx(eager, rel=SAME)
    assert gen.compiled and gen.kept_start == eager_gen.kept_start
    assert counter.frame_count == 3  # decoder and CLIP tower for the starts, then the one-start step


def test_one_compiled_step_serves_jobs_with_other_prompts_and_settings(models, monkeypatch):
    """Nothing of a job's own is traced into the compiled step: a worker's next job, with other prompts,
    weights, regularisers and learning rate, reuses it instead of compiling again (which, past dynamo's
    recompile limit, would leave every later job eager)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    counter = CompileCounterWithBackend("aot_eager")
    monkeypatch.setattr(acceleration, "BACKEND", counter)
    monkeypatch.setattr(acceleration, "SCOPE", "step")
    torch._dynamo.reset()
    jobs = [tiny_config(steps=2, compile="on"),
            tiny_config(steps=2, compile="on", prompts="a blue square:2|a red circle:-0.5:0.1", seed=7, lr=0.3,
                        tv_weight=0.3, init_colour="#808080", init_weight=0.2, init_weight_decay_steps=5)]
    for config in jobs:
        gen = Generation(config, device="cpu", models=models, expected_steps=float("inf"))
        losses(gen)
        assert gen.compiled
    assert counter.frame_count == 1


class _FailsInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("compiled backward failed")


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_failed_compile_warns_and_gives_the_eager_steps(models, monkeypatch, where):
    def broken_compile(fn, device=None):
        def run(*args, **kwargs):
            if where == "forward":
                raise RuntimeError("InductorError: no C++ compiler")
            return _FailsInBackward.apply(fn(*args, **kwargs))
        return run

    config = tiny_config(steps=3)
    eager = losses(Generation(config.replace(compile="off"), device="cpu", models=models))
    monkeypatch.setattr(acceleration, "compiled", broken_compile)
    gen = Generation(config.replace(compile="on"), device="cpu", models=models)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*running without compiling"):
        fallen_back = losses(gen)
    assert not gen.compiled and fallen_back == eager  # the failed step was redone exactly


def test_failed_compile_of_the_step_after_several_starts_gives_the_eager_steps(models, monkeypatch):
    """The one-start function first compiles after the starts (which ran on the compiled parts): a failure
    there falls back to eager too, and the step is redone exactly."""
    def compile_all_but_the_step(fn, device=None):
        if fn.__name__ != "_guide_forward":
            return fn  # the parts "compile" (run as they are)

        def run(*args, **kwargs):
            raise RuntimeError("InductorError: no C++ compiler")
        return run

    monkeypatch.setattr(acceleration, "SCOPE", "step")
    config = tiny_config(steps=4, starts=2, start_steps=2)
    eager = losses(Generation(config.replace(compile="off"), device="cpu", models=models))
    monkeypatch.setattr(acceleration, "compiled", compile_all_but_the_step)
    gen = Generation(config.replace(compile="on"), device="cpu", models=models)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        fallen_back = losses(gen)
    assert not gen.compiled and fallen_back == eager


def test_channels_last_decoder_gives_the_same_steps(monkeypatch):
    config = tiny_config(steps=3)
    plain = losses(Generation(config, device="cpu", models=ModelCache("cpu")))
    monkeypatch.setattr(acceleration, "channels_last", lambda device: True)
    gen = Generation(config, device="cpu", models=ModelCache("cpu"))  # its own models: this changes them
    assert gen.vqgan.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert losses(gen) == pytest.approx(plain, rel=SAME)


def test_failed_compile_in_a_batch_gives_the_eager_steps(models, monkeypatch):
    from generator.batch import GenerationBatch

    def broken_compile(fn, device=None):
        def run(*args, **kwargs):
            raise RuntimeError("InductorError: no C++ compiler")
        return run

    configs = [tiny_config(steps=2, seed=seed) for seed in (1, 2)]
    eager = GenerationBatch([Generation(c.replace(compile="off"), device="cpu", models=models) for c in configs])
    expected = [[r.loss for r in eager.step().values()] for _ in range(2)]
    monkeypatch.setattr(acceleration, "compiled", broken_compile)
    batch = GenerationBatch([Generation(c.replace(compile="on"), device="cpu", models=models) for c in configs])
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        got = [[r.loss for r in batch.step().values()] for _ in range(2)]
    assert got == expected and not any(gen.compiled for gen in batch.members)
