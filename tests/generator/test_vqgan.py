"""VQGAN configs and strict loading in taming's own checkpoint layouts (small sizes, same structure)."""
import pytest
import torch

from generator.errors import ConfigError, WeightsError
from generator.vqgan import VQGAN, VQGANConfig, vector_quantize

DDCONFIG = """
    ddconfig:
      double_z: false
      z_channels: 32
      resolution: 64
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 1, 2]
      num_res_blocks: 1
      attn_resolutions: [16]
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {disc_conditional: false, disc_in_channels: 3, disc_start: 0, disc_weight: 0.75}
"""
VQ_YAML = """
model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 8
    n_embed: 64
    monitor: val/rec_loss
""" + DDCONFIG
GUMBEL_YAML = """
model:
  target: taming.models.vqgan.GumbelVQ
  params:
    kl_weight: 1.0e-08
    embed_dim: 32
    n_embed: 64
    temperature_scheduler_config:
      target: taming.lr_scheduler.LambdaWarmUpCosineScheduler
      params: {warm_up_steps: 0, max_decay_steps: 1000001, lr_start: 0.9, lr_max: 0.9, lr_min: 1.0e-06}
""" + DDCONFIG
NET2NET_YAML = """
model:
  target: taming.models.cond_transformer.Net2NetTransformer
  params:
    first_stage_key: image
    transformer_config:
      target: taming.modules.transformer.mingpt.GPT
      params: {vocab_size: 64, block_size: 512, n_layer: 2, n_head: 2, n_embd: 32}
    first_stage_config:
      target: taming.models.vqgan.VQModel
      params:
        embed_dim: 8
        n_embed: 64
""" + "\n".join("    " + line for line in DDCONFIG.splitlines()) + """
    cond_stage_config:
      target: taming.models.vqgan.VQModel
      params: {}
"""


def taming_checkpoint(model: VQGAN, prefix: str = "", extra: dict | None = None) -> dict:
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    state.update(extra or {})
    return state


def test_parses_taming_configs():
    vq = VQGANConfig.from_yaml(VQ_YAML)
    assert (vq.quantizer, vq.embed_dim, vq.n_embed, vq.factor, vq.key_prefix) == ("vq", 8, 64, 4, "")
    gumbel = VQGANConfig.from_yaml(GUMBEL_YAML)
    assert gumbel.quantizer == "gumbel"
    net2net = VQGANConfig.from_yaml(NET2NET_YAML)
    assert (net2net.quantizer, net2net.key_prefix) == ("vq", "first_stage_model.")


@pytest.mark.parametrize("yaml_text,message", [
    ("model: {target: taming.models.vqgan.Unknown, params: {}}", "unsupported model target"),
    ("just text", "not a taming model config"),
    (VQ_YAML.replace("n_embed: 64", "n_embed: 64\n    remap: used.npy"), "remapping"),
    (VQ_YAML.replace("      ch: 32\n", ""), "missing key 'ch'"),
])
def test_bad_configs(yaml_text, message):
    with pytest.raises(ConfigError, match=message):
        VQGANConfig.from_yaml(yaml_text)


def test_module_names_follow_taming_layout():
    keys = set(VQGAN(VQGANConfig.from_yaml(VQ_YAML)).state_dict())
    for key in ["quantize.embedding.weight", "quant_conv.weight", "post_quant_conv.bias",
                "encoder.down.0.block.0.norm1.weight", "encoder.mid.attn_1.q.weight",
                "decoder.up.2.block.0.conv1.weight", "decoder.conv_out.bias"]:
        assert key in keys, key
    gumbel_keys = set(VQGAN(VQGANConfig.from_yaml(GUMBEL_YAML)).state_dict())
    assert {"quantize.embed.weight", "quantize.proj.weight"} <= gumbel_keys


def test_loads_training_checkpoint_ignoring_loss_weights():
    torch.manual_seed(0)
    source = VQGAN(VQGANConfig.from_yaml(VQ_YAML))
    state = taming_checkpoint(source, extra={"loss.discriminator.main.0.weight": torch.zeros(1),
                                             "loss.perceptual_loss.net.slice1.0.weight": torch.zeros(1)})
    target = VQGAN(VQGANConfig.from_yaml(VQ_YAML))
    target.load_checkpoint_state(state, "test.ckpt")
    assert torch.equal(target.codebook, source.codebook)


def test_loads_first_stage_of_net2net_checkpoint():
    source = VQGAN(VQGANConfig.from_yaml(NET2NET_YAML))
    state = taming_checkpoint(source, "first_stage_model.", {"transformer.tok_emb.weight": torch.zeros(1),
                                                             "cond_stage_model.encoder.conv_in.weight": torch.zeros(1)})
    target = VQGAN(VQGANConfig.from_yaml(NET2NET_YAML))
    target.load_checkpoint_state(state, "sflckr.ckpt")
    assert torch.equal(target.decoder.conv_out.weight, source.decoder.conv_out.weight)


def test_missing_key_is_named():
    model = VQGAN(VQGANConfig.from_yaml(VQ_YAML))
    state = taming_checkpoint(model)
    del state["decoder.conv_out.bias"]
    with pytest.raises(WeightsError, match="lacks 1 weight.*'decoder.conv_out.bias'"):
        model.load_checkpoint_state(state, "x.ckpt")


def test_unexpected_key_is_named():
    model = VQGAN(VQGANConfig.from_yaml(VQ_YAML))
    state = taming_checkpoint(model, extra={"decoder.extra_layer.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="unexpected weight.*'decoder.extra_layer.weight'"):
        model.load_checkpoint_state(state, "x.ckpt")


def test_wrong_shape_is_named():
    model = VQGAN(VQGANConfig.from_yaml(VQ_YAML))
    state = taming_checkpoint(model)
    state["quantize.embedding.weight"] = torch.zeros(128, 8)
    with pytest.raises(WeightsError, match="'quantize.embedding.weight' has shape \\(128, 8\\)"):
        model.load_checkpoint_state(state, "x.ckpt")


def test_gumbel_encode_decode_shapes():
    model = VQGAN(VQGANConfig.from_yaml(GUMBEL_YAML))
    z = model.encode(torch.zeros(1, 3, 32, 48))
    assert z.shape == (1, 32, 8, 12)
    assert model.decode(z).shape == (1, 3, 32, 48)


def test_vector_quantize_picks_nearest_code_with_straight_through_gradient():
    book = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 3.0]])
    z = torch.tensor([[[[0.9]], [[1.2]]], [[[-1.5]], [[2.0]]]]).requires_grad_(True)  # two latents [2, 2, 1, 1]
    q = vector_quantize(z, book)
    assert q[0, :, 0, 0].tolist() == [1.0, 1.0] and q[1, :, 0, 0].tolist() == [-2.0, 3.0]
    q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
