"""The fast step computes what the plain one does: ViT and decoder rewrites, quantiser, precision, memory."""
import numpy as np
import pytest
import torch

from generator import ConfigError, Generation
from generator import memory, precision
from generator.decoder import decode
from generator.vqgan import vector_quantize
from generator.vit import fast_image_encoder
from tests.conftest import tiny_config

# bf16 autocast keeps each step's loss within 1% (relative) of the float32 path over the first 8 steps on
# the tiny pair (measured: 0.1% over 20 steps); fp32 itself is bit-reproducible.
BF16_TOLERANCE = 0.01


def test_fast_vit_matches_open_clip(models):
    clip = models.clips("tiny")[0][0]
    encode = fast_image_encoder(clip.model.visual)
    assert encode is not None
    x = torch.rand(4, 3, clip.input_size, clip.input_size, requires_grad=True)
    slow = clip.model.encode_image((x - clip.mean) / clip.std)
    (slow_grad,) = torch.autograd.grad(slow.square().sum(), x)
    fast = encode(x, clip.mean, clip.std)
    (fast_grad,) = torch.autograd.grad(fast.square().sum(), x)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-4, atol=1e-6)


def test_unknown_vision_tower_keeps_open_clip_forward():
    assert fast_image_encoder(torch.nn.Linear(3, 3)) is None


@pytest.mark.parametrize("checkpoint", [False, True])
def test_decoder_rewrite_matches_taming(models, checkpoint):
    vqgan = models.vqgan("tiny")
    z = torch.randn(1, vqgan.config.embed_dim, 8, 8, requires_grad=True)
    slow = vqgan.decode(z)
    (slow_grad,) = torch.autograd.grad(slow.square().sum(), z)
    fast = decode(vqgan.decoder, vqgan.post_quant_conv(z), checkpoint=checkpoint)
    (fast_grad,) = torch.autograd.grad(fast.square().sum(), z)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-4, atol=1e-3)


def test_plain_attention_for_wide_heads_matches_fused(models, monkeypatch):
    """The plain products that CUDA uses for heads wider than its fused kernels take (512 in the f16
    VQGANs) compute what scaled_dot_product_attention does, forward and backward, alone and in the decoder."""
    from generator import decoder

    q, k, v = (torch.randn(2, 1, 256, 512, requires_grad=True) for _ in range(3))
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    plain = decoder.plain_attention(q, k, v)
    torch.testing.assert_close(plain, fused, rtol=1e-5, atol=1e-5)
    grads = [torch.autograd.grad(out.square().sum(), (q, k, v)) for out in (fused, plain)]
    for g_fused, g_plain in zip(*grads):
        torch.testing.assert_close(g_plain, g_fused, rtol=1e-4, atol=1e-5)
    vqgan = models.vqgan("tiny")
    z = torch.randn(1, vqgan.config.embed_dim, 8, 8)
    expected = decode(vqgan.decoder, vqgan.post_quant_conv(z))
    monkeypatch.setattr(decoder, "_sdpa", decoder.plain_attention)
    torch.testing.assert_close(decode(vqgan.decoder, vqgan.post_quant_conv(z)), expected, rtol=1e-5, atol=1e-5)


def test_quantiser_picks_the_nearest_code_with_straight_through_gradient():
    codebook = torch.randn(300, 16)
    z = torch.randn(2, 16, 3, 5, requires_grad=True)
    out = vector_quantize(z, codebook, codebook.pow(2).sum(1))
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 16)
    nearest = codebook[torch.cdist(flat, codebook).argmin(1)].view(2, 3, 5, 16).permute(0, 3, 1, 2)
    torch.testing.assert_close(out.detach(), nearest)
    out.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


def test_bf16_loss_trajectory_stays_within_tolerance_of_fp32(models):
    """bf16 autocast runs on any CPU (emulated where not native), so the fast path is checked here too."""
    fp32 = [s.loss for s in Generation(tiny_config(steps=8, precision="fp32"), device="cpu", models=models)]
    bf16_gen = Generation(tiny_config(steps=8, precision="bf16"), device="cpu", models=models)
    bf16 = [s.loss for s in bf16_gen]
    assert bf16_gen.precision == "bf16"
    assert fp32 != bf16  # autocast really ran the models in bf16
    np.testing.assert_allclose(bf16, fp32, rtol=BF16_TOLERANCE)


def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("fp16", cpu) == "fp16"


def test_checkpointed_decoder_gives_the_same_steps(models):
    plain = [s.loss for s in Generation(tiny_config(steps=3), device="cpu", models=models)]
    saved = [s.loss for s in Generation(tiny_config(steps=3, checkpoint_decoder=True), device="cpu", models=models)]
    np.testing.assert_allclose(saved, plain, rtol=1e-5)


def test_job_too_big_for_the_device_is_refused(models, monkeypatch):
    monkeypatch.setattr(memory, "free_memory", lambda device: 2 ** 20)
    with pytest.raises(ConfigError, match=r"needs about .* GiB at 64x64 with 8 cutouts; the device has 0.0 GiB "
                                          r"free; try a smaller size or fewer cutouts"):
        Generation(tiny_config(), device="cpu", models=models)


def test_memory_estimate_grows_with_size_and_cutouts(models):
    vqgan, clips = models.vqgan("tiny"), models.clips("tiny")
    small = memory.estimate_memory(tiny_config(), vqgan, clips)
    assert memory.estimate_memory(tiny_config(width=128, height=128), vqgan, clips) > small
    assert memory.estimate_memory(tiny_config(cutn=32), vqgan, clips) > small
    assert memory.estimate_memory(tiny_config(checkpoint_decoder=True), vqgan, clips) < small
    assert memory.estimate_memory(tiny_config(), vqgan, clips, "bf16") < small


def test_step_record_reads_losses_once(models):
    step = next(iter(Generation(tiny_config(steps=1, prompts="a:1 | b:-0.5"), device="cpu", models=models)))
    assert step.loss == pytest.approx(sum(step.losses.values()), rel=1e-5)
    assert isinstance(step.loss, float) and set(step.losses) == {"a", "b"}
