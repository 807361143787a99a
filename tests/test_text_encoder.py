"""TextEncoder on a `clip` package backbone: equals its encode_text, truncation is exact, checkpointing keeps gradients."""
import clip
import pytest
import torch

from tests.tiny_clip import build_tiny_clip
from trainers.common.backbone import backbone_from_clip_model
from trainers.common.text_encoder import TextEncoder

# Different lengths on purpose: the longest EOT decides where truncation cuts.
TEXTS = ["a photo of a dog.", "x", "a very long description of a rather unusual kind of aircraft."]


@pytest.fixture(scope="module")
def clip_model():
    return backbone_from_clip_model(build_tiny_clip("rn", seed=3), "tiny-rn")


def _embed(model, texts):
    tokens = clip.tokenize(texts)
    with torch.no_grad():
        return model.token_embedding(tokens), tokens


def test_matches_clip_encode_text_truncated_and_full(clip_model):
    prompts, tokens = _embed(clip_model, TEXTS)
    lengths = []  # sequence length each attention call actually sees
    hook = clip_model.text_tower.blocks[0].attn.register_forward_hook(
        lambda module, args, out: lengths.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            expected = clip_model.encode_text(tokens)
            truncated = TextEncoder(clip_model, truncate=True)(prompts, tokens)
            full = TextEncoder(clip_model, truncate=False)(prompts, tokens)
    finally:
        hook.remove()
    assert lengths == [77, int(tokens.argmax(-1).max()) + 1, 77]
    assert lengths[1] < 20
    assert truncated.shape == expected.shape == (3, 64)
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(truncated, expected, rtol=1e-5, atol=1e-5)


def test_truncation_ignores_everything_after_eot(clip_model):
    """Garbage after the longest EOT must not change the output (that is why cutting is exact),
    while the full-length path is also unaffected thanks to the causal mask."""
    prompts, tokens = _embed(clip_model, TEXTS)
    longest = int(tokens.argmax(-1).max())
    noisy = prompts.clone()
    noisy[:, longest + 1:] = torch.randn_like(noisy[:, longest + 1:]) * 10
    encoder = TextEncoder(clip_model, truncate=True)
    with torch.no_grad():
        torch.testing.assert_close(encoder(noisy, tokens), encoder(prompts, tokens))
        # A change at EOT must show up, or the test above proves nothing. (Random, not a
        # constant shift: every LayerNorm removes a shift shared by all channels.)
        noisy[:, longest] += torch.randn_like(noisy[:, longest])
        assert not torch.allclose(encoder(noisy, tokens), encoder(prompts, tokens))


def test_shared_clip_model_is_left_untouched(clip_model):
    masks = [block.attn_mask.clone() for block in clip_model.text_tower.blocks]
    prompts, tokens = _embed(clip_model, TEXTS[:2])  # short batch: cuts well below 77
    with torch.no_grad():
        before = clip_model.encode_text(tokens)
        TextEncoder(clip_model, truncate=True)(prompts, tokens)
        after = clip_model.encode_text(tokens)
    for block, mask in zip(clip_model.text_tower.blocks, masks):
        assert torch.equal(block.attn_mask, mask)
    assert torch.equal(before, after)


def test_gradient_checkpointing_gives_same_values_and_gradients(clip_model):
    prompts, tokens = _embed(clip_model, TEXTS)
    results = {}
    for use_ckpt in (False, True):
        x = prompts.clone().requires_grad_(True)
        out = TextEncoder(clip_model, grad_checkpoint=use_ckpt)(x, tokens)
        out.pow(2).sum().backward()
        results[use_ckpt] = (out.detach(), x.grad)
    torch.testing.assert_close(results[True][0], results[False][0])
    torch.testing.assert_close(results[True][1], results[False][1])
    assert results[False][1].abs().sum() > 0
