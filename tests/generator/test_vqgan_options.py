"""vqclip's own VQGAN options in the taming YAML: `norm: none` and `quantizer_kind: cosine`."""
import pytest
import torch
from torch import nn

from generator.errors import ConfigError
from generator.vqgan import VQGAN, VQGANConfig, vector_quantize

YAML = """
model:
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 8
    n_embed: 64
{extra}
    ddconfig: {{double_z: false, z_channels: 16, resolution: 32, in_channels: 3, out_ch: 3, ch: 16,
               ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [], dropout: 0.0}}
"""


def config(**extra) -> VQGANConfig:
    return VQGANConfig.from_yaml(YAML.format(extra="\n".join(f"    {k}: {v}" for k, v in extra.items())))


def test_defaults_are_taming():
    c = config()
    assert (c.norm, c.quantizer) == ("group32", "vq")


def test_norm_none_builds_without_group_norm_and_width_16():
    model = VQGAN(config(norm="none"))
    assert not any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert not any("norm" in k for k in model.state_dict())
    with pytest.raises(ValueError):  # GroupNorm(32) cannot divide 16 channels: the taming default fails
        VQGAN(config())


def test_unknown_options_name_the_key():
    with pytest.raises(ConfigError, match="norm"):
        config(norm="batch")
    with pytest.raises(ConfigError, match="quantizer_kind"):
        config(quantizer_kind="lfq")


def test_cosine_codebook_is_unit_and_encode_picks_highest_cosine():
    torch.manual_seed(0)
    model = VQGAN(config(norm="none", quantizer_kind="cosine")).eval()
    assert model.config.quantizer == "cosine"
    assert set(model.state_dict()) >= {"quantize.embedding.weight", "quant_conv.weight", "post_quant_conv.weight"}
    book = model.codebook
    assert torch.allclose(book.norm(dim=1), torch.ones(64), atol=1e-5)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z = model.encode(x)
    h = torch.nn.functional.normalize(model.quant_conv(model.encoder(x)), dim=1)
    best = torch.einsum("bchw,nc->bnhw", h, book).argmax(1)
    assert torch.allclose(z, book[best].permute(0, 3, 1, 2), atol=1e-6)
    # the engine's quantiser on an unnormalised latent picks the same codes (nearest unit code = max cosine)
    assert torch.allclose(vector_quantize(h * 3.0, book), z, atol=1e-5)
    assert model.decode(z).shape == (2, 3, 32, 32)


def test_cosine_checkpoint_round_trip_in_fp16_through_the_strict_loader():
    model = VQGAN(config(norm="none", quantizer_kind="cosine"))
    state = {k: v.half() for k, v in model.state_dict().items()}
    other = VQGAN(config(norm="none", quantizer_kind="cosine"))
    other.load_checkpoint_state(state, "test")
    assert other.codebook.dtype == torch.float32
    assert torch.allclose(other.codebook, model.codebook, atol=2e-3)
