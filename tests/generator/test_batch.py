"""Several generations stepped as one batch give each the result it gets alone (up to rounding).

Tolerances come from measuring the tiny pair on the CPU (4 members, 20 steps): loss trajectories differ by
at most 2.4e-7 (relative 2.1e-7), latents by at most 7e-4 and final images by at most one grey level in
one pixel, because a batched decode rounds differently from a single one. The bounds below are about ten
times those, and far below the difference another seed makes.
"""
import numpy as np
import pytest

from generator import ConfigError, Generation
from generator.batch import GenerationBatch, batch_key
from tests.conftest import tiny_config

LOSS_RTOL = 1e-5  # relative, per step
Z_ATOL = 1e-2  # absolute, per latent value (codebook values are about unit normal)
PIXEL_ATOL = 2  # grey levels, per pixel
PIXEL_MEAN_ATOL = 0.01  # mean grey-level difference over the image


def configs(steps=8):
    """Members that differ in everything a member may have of its own."""
    return [
        tiny_config(prompts="a red circle", seed=1, steps=steps),
        tiny_config(prompts="a blue square:1 | noise:-0.3", seed=2, steps=steps, lr=0.2, optimizer="adamw"),
        tiny_config(prompts="green", seed=3, steps=steps, tv_weight=0.1, augmentations=["Fl"], cut_pow=2.0),
        tiny_config(prompts="a logo", seed=4, steps=steps, init_weight=0.5, clip="tiny:0.5"),
    ]


def alone(config, models):
    gen = Generation(config, device="cpu", models=models)
    gen.run()
    return gen


def assert_same_run(batched, single):
    assert batched.step_index == single.step_index
    np.testing.assert_allclose(batched.loss_history, single.loss_history, rtol=LOSS_RTOL)
    assert (batched.z - single.z).abs().max().item() < Z_ATOL
    a, b = (np.asarray(g.image()).astype(np.int16) for g in (batched, single))
    diff = np.abs(a - b)
    assert diff.max() <= PIXEL_ATOL and diff.mean() <= PIXEL_MEAN_ATOL


@pytest.fixture(scope="module")
def singles(models):
    return [alone(config, models) for config in configs()]


def test_batched_members_match_running_alone(models, singles):
    gens = [Generation(config, device="cpu", models=models) for config in configs()]
    batch = GenerationBatch(gens)
    records = batch.step()
    assert [records[g].index for g in gens] == [1, 1, 1, 1]
    assert set(records[gens[1]].losses) == {"a blue square", "noise"}
    batch.run()
    for batched, single in zip(gens, singles):
        assert_same_run(batched, single)
    assert len(batch) == 0 and batch.step() == {}
    other_seed = alone(configs()[0].replace(seed=9), models)
    assert np.abs(np.asarray(other_seed.image()).astype(int) - np.asarray(singles[0].image())).mean() > 1


def test_a_member_that_leaves_does_not_change_the_others(models, singles):
    gens = [Generation(config, device="cpu", models=models) for config in configs()]
    short = Generation(configs()[0].replace(steps=3), device="cpu", models=models)  # ends on its own
    batch = GenerationBatch([*gens, short])
    for _ in range(4):
        batch.step()
    gens[1].cancel()  # leaves at the top of the next step
    batch.remove(gens[2])  # leaves at once
    batch.run()
    assert short.step_index == 3 and gens[1].step_index == 4 and gens[2].step_index == 4
    for i in (0, 3):
        assert_same_run(gens[i], singles[i])
    assert_same_run(short, alone(configs()[0].replace(steps=3), models))


def test_a_member_that_joins_mid_run_matches_running_alone(models, singles):
    first, late = (Generation(config, device="cpu", models=models) for config in configs()[:2])
    batch = GenerationBatch([first])
    for _ in range(4):
        batch.step()
    batch.add(late)
    while batch:
        batch.step()
    assert_same_run(first, singles[0])
    assert_same_run(late, singles[1])


def test_different_steps_and_a_lone_member(models, singles):
    longer = Generation(configs()[0].replace(steps=11), device="cpu", models=models)
    other = Generation(configs()[1], device="cpu", models=models)
    GenerationBatch([longer, other]).run()  # the last 3 steps run alone
    assert_same_run(other, singles[1])
    assert_same_run(longer, alone(configs()[0].replace(steps=11), models))


def test_batch_key_names_what_must_match():
    base = tiny_config()
    assert batch_key(base) == batch_key(base.replace(prompts="x", seed=5, lr=0.3, steps=3, clip="tiny:0.5"))
    for change in (dict(width=32), dict(height=32), dict(cutn=4), dict(clip="tiny,tiny"), dict(precision="fp32"),
                   dict(vqgan="other"), dict(checkpoint_decoder=True)):
        assert batch_key(base) != batch_key(base.replace(**change)), change
    # a VQGAN's name for its CLIPs is the CLIPs themselves, whatever their weights
    shapes = base.replace(vqgan="shapes", clip="shapes")
    assert batch_key(shapes) == batch_key(shapes.replace(clip="shapes-clip:2,shapes-robust"))
    assert batch_key(shapes) != batch_key(shapes.replace(clip="shapes-robust,shapes-clip"))
    assert batch_key(shapes) != batch_key(shapes.replace(clip="shapes-clip"))


def test_incompatible_members_are_refused_with_a_clear_error(models):
    gen = Generation(tiny_config(), device="cpu", models=models)
    batch = GenerationBatch([gen])
    with pytest.raises(ConfigError, match=r"^cannot batch these generations: width 32 differs from the batch's 64$"):
        batch.add(Generation(tiny_config(width=32), device="cpu", models=models))
    with pytest.raises(ConfigError, match=r"cutn 4 differs from the batch's 8"):
        batch.add(Generation(tiny_config(cutn=4), device="cpu", models=models))
    from generator import ModelCache
    with pytest.raises(ConfigError, match="models were loaded separately"):
        batch.add(Generation(tiny_config(), device="cpu", models=ModelCache("cpu")))
    with pytest.raises(ConfigError, match="already in the batch"):
        batch.add(gen)
    assert batch.members == [gen]


def test_a_batch_takes_only_the_members_that_fit_in_free_memory(models, monkeypatch):
    from generator import memory
    from generator.batch import GenerationBatch, batch_capacity

    gens = [Generation(tiny_config(steps=2, seed=seed), device="cpu", models=models) for seed in (1, 2, 3)]
    need = memory.estimate_memory(gens[0].config, gens[0].vqgan, gens[0].clips, gens[0].precision)
    monkeypatch.setattr(memory, "free_memory", lambda device: int(need * 2.5))  # a device for two steps
    assert batch_capacity(gens[0].config, gens[0].vqgan, gens[0].clips, gens[0].device, gens[0].precision) == 2
    batch = GenerationBatch(gens[:2])
    assert not batch.has_room()
    with pytest.raises(ConfigError, match=r"a batch of 3 needs about .* GiB; the device has .* GiB free"):
        batch.add(gens[2])
    assert len(batch) == 2


def test_a_member_with_several_starts_matches_running_alone(models):
    """A member still running its starts decodes and embeds them with the others, and keeps the same start."""
    settings = [tiny_config(seed=5, steps=6, starts=3, start_steps=3), tiny_config(prompts="a red circle", seed=1,
                                                                                 steps=6)]
    gens = [Generation(config, device="cpu", models=models) for config in settings]
    GenerationBatch(gens).run()
    for batched, config in zip(gens, settings):
        single = alone(config, models)
        assert batched.kept_start == single.kept_start
        assert_same_run(batched, single)
