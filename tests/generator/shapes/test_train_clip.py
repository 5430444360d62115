"""The CLIP trainer's shortcuts compute what open_clip computes."""
import random

import torch

from generator.clip import build_clip
from generator.shapes.train_clip import altered_captions, contrastive_loss, encode_text, tokenize
from generator.shapes.world import World


def test_text_encoder_on_truncated_tokens_matches_open_clip():
    clip = build_clip("vqclip-shapes-judge", None, seed=3)
    _, scenes = World("train").batch(0, 8)
    tokens = tokenize(clip.tokenizer, [s.caption for s in scenes] + altered_captions(scenes, random.Random(0)))
    assert tokens.shape == (32, 32)
    with torch.no_grad():
        assert torch.allclose(encode_text(clip.model, tokens), clip.model.encode_text(tokens), atol=1e-5)


def test_identical_captions_share_the_positive_and_extra_captions_are_negatives():
    img = torch.eye(4)[:3]  # three images; caption 3 is a text negative
    txt = torch.eye(4)
    tokens = torch.tensor([[1, 2], [1, 2], [3, 4], [5, 6]])  # captions 0 and 1 are the same
    perfect = contrastive_loss(img, txt, tokens, 3, 100.0)
    swapped = contrastive_loss(img, txt[[3, 1, 2, 0]], tokens, 3, 100.0)
    assert perfect < swapped
