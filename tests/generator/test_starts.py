"""Several starts: they run side by side for `start_steps` steps, each on its own, then the best goes on."""
import pytest
import torch

from generator import ConfigError, Generation
from generator import memory
from generator.memory import estimate_memory
from tests.conftest import tiny_config


def test_the_start_with_the_lowest_score_is_kept(models):
    gen = Generation(tiny_config(steps=6, starts=3, start_steps=4), device="cpu", models=models)
    assert gen.z.shape[0] == 3 and gen.kept_start is None
    shapes, scores = [], []
    for record in gen:
        shapes.append(gen.z.shape[0])
        scores.append(gen.start_scores)
        if record.index == 3:  # steps 3 and 4 are scored: the leader so far is the lowest of step 3
            assert record.loss == pytest.approx(min(gen.start_scores), rel=1e-6)
    assert shapes == [3, 3, 3, 1, 1, 1]
    assert scores[0] == [0.0, 0.0, 0.0] and len(set(scores[-1])) == 3  # the starts went different ways
    assert gen.kept_start == min(range(3), key=scores[-1].__getitem__)
    assert len(gen.loss_history) == 6 and gen.image().size == (64, 64)


def test_each_start_moves_as_it_would_alone(models):
    """Changing one start's latent changes nothing for the others: each gets only its own gradient, and
    the optimiser works element by element."""
    def first_start_after_three_steps(disturb: bool) -> torch.Tensor:
        gen = Generation(tiny_config(steps=8, starts=2, start_steps=5), device="cpu", models=models)
        if disturb:
            with torch.no_grad():
                gen.z[1] = gen.z[1].flip(-1)
        for _ in range(3):
            gen.step()
        return gen.z.detach()[0].clone()

    torch.testing.assert_close(first_start_after_three_steps(False), first_start_after_three_steps(True),
                               rtol=0, atol=1e-6)


def test_the_kept_start_keeps_its_optimiser_state(models):
    gen = Generation(tiny_config(steps=4, starts=2, start_steps=2), device="cpu", models=models)
    gen.step()
    before, latent = gen.optimizer, gen.z
    gen.step()
    old = before.state[latent]
    new = gen.optimizer.state[gen.z]
    assert gen.z.shape[0] == 1 and new["exp_avg"].shape == gen.z.shape
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(new[key], old[key][gen.kept_start:gen.kept_start + 1], rtol=0, atol=0)
    assert float(new["step"]) == 2.0
    gen.step()  # and it goes on from there
    assert float(gen.optimizer.state[gen.z]["step"]) == 3.0


def test_fewer_steps_than_start_steps_keep_a_start_at_the_end(models):
    gen = Generation(tiny_config(steps=3, starts=2, start_steps=10), device="cpu", models=models)
    gen.run()
    assert gen.kept_start in (0, 1) and gen.z.shape[0] == 1 and len(gen.loss_history) == 3


def test_random_codes_differ_between_starts(models):
    gen = Generation(tiny_config(starts=2), device="cpu", models=models)
    assert not torch.equal(gen.z[0], gen.z[1])


def test_one_start_is_the_plain_loop(models):
    gen = Generation(tiny_config(steps=3), device="cpu", models=models)
    gen.run()
    assert gen.start_scores == [] and gen.kept_start is None and gen.z.shape[0] == 1


@pytest.mark.parametrize("key", ["starts", "start_steps"])
def test_starts_must_be_positive(key):
    with pytest.raises(ConfigError, match=f"{key} must be positive"):
        tiny_config(**{key: 0})


def test_memory_estimate_counts_the_starts(models):
    vqgan, clips = models.vqgan("tiny"), models.clips("tiny")
    one = estimate_memory(tiny_config(), vqgan, clips)
    assert estimate_memory(tiny_config(starts=4), vqgan, clips) == pytest.approx(4 * one, abs=4)


def test_starts_that_do_not_fit_are_refused_by_name(models, monkeypatch):
    one = estimate_memory(tiny_config(), models.vqgan("tiny"), models.clips("tiny"))
    monkeypatch.setattr(memory, "free_memory", lambda device: 2 * one)  # room for two starts, not four
    Generation(tiny_config(starts=2), device="cpu", models=models)
    with pytest.raises(ConfigError, match=r"with 8 cutouts and 4 starts; .* try a smaller size, fewer starts or "
                                          r"fewer cutouts"):
        Generation(tiny_config(starts=4), device="cpu", models=models)
