"""torch.compile and channels_last: same steps as eager NCHW, and a failed compile falls back to eager."""
import pytest
import torch

from generator import Generation, acceleration
from generator.models import ModelCache
from tests.conftest import tiny_config


def losses(gen):
    return [step.loss for step in gen]


def test_auto_compiles_on_gpus_only():
    assert acceleration.resolve_compile("auto", torch.device("cuda", 0))
    assert not acceleration.resolve_compile("auto", torch.device("cpu"))
    assert acceleration.resolve_compile("on", torch.device("cpu"))
    assert not acceleration.resolve_compile("off", torch.device("cuda", 0))


def test_compiled_step_traces_and_matches_eager(models, monkeypatch):
    # The real torch.compile front end (dynamo tracing + AOTAutograd's forward/backward graphs), with the
    # backend that runs those graphs as they are: inductor's C++ code generation takes minutes on this CPU
    # (measured in benchmarks/RESULTS.md), far too long for the test suite.
    monkeypatch.setattr(acceleration, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    config = tiny_config(steps=3)
    eager = losses(Generation(config.replace(compile="off"), device="cpu", models=models))
    gen = Generation(config.replace(compile="on"), device="cpu", models=models)
    with_compile = losses(gen)
    assert gen.compiled  # no fallback happened
    assert with_compile == pytest.approx(eager, rel=1e-5)


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


def test_channels_last_decoder_gives_the_same_steps(monkeypatch):
    config = tiny_config(steps=3)
    plain = losses(Generation(config, device="cpu", models=ModelCache("cpu")))
    monkeypatch.setattr(acceleration, "channels_last", lambda device: True)
    gen = Generation(config, device="cpu", models=ModelCache("cpu"))  # its own models: this changes them
    assert gen.vqgan.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert losses(gen) == pytest.approx(plain, rel=1e-5)


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
