"""CoOp's shared-context text path equals the reference full-length computation (logits and
gradients), on real CLIP text towers with random weights; other settings keep whole prompts."""
import pytest
import torch
import torch.nn.functional as F
from clip.model import CLIP

from dassl.config import get_cfg_default
from trainers.common.backbone import backbone_from_clip_model
from trainers.common.clip_loader import TOY_ARCHITECTURES
from trainers.config import extend_cfg
from trainers.coop import PromptClassifier, text_path

# Token counts differ (1 to 7 name tokens), two names share a length: several length groups.
CLASSNAMES = ["cat", "dog", "golden_retriever", "a rather long space shuttle name", "Boeing 747-400",
              "sea_lion", "x"]


def _cfg(**coop):
    cfg = extend_cfg(get_cfg_default())
    for key, value in coop.items():
        cfg.TRAINER.COOP[key] = value
    return cfg


@pytest.fixture(scope="module", params=["tiny-rn", "small-rn"])  # 1 head x 2 layers, 4 heads x 4 layers
def clip_model(request):
    torch.manual_seed(5)
    return backbone_from_clip_model(CLIP(**TOY_ARCHITECTURES[request.param]), request.param).requires_grad_(False)


def _logits_and_grad(model, image_features, labels):
    model.prompt_learner.ctx.grad = None
    logits = model(image_features)
    F.cross_entropy(logits, labels).backward()
    return logits.detach(), model.prompt_learner.ctx.grad.clone()


@pytest.mark.parametrize("coop", [dict(N_CTX=16), dict(N_CTX=4), dict(CTX_INIT="a photo of a")])
def test_shared_context_equals_the_full_77_token_path(clip_model, coop):
    torch.manual_seed(0)
    shared = PromptClassifier(_cfg(**coop), CLASSNAMES, clip_model)
    torch.manual_seed(0)
    full = PromptClassifier(_cfg(TRUNCATE_TEXT=False, **coop), CLASSNAMES, clip_model)
    assert (shared.text_path, full.text_path) == ("shared-context", "full")
    assert len(shared.length_groups) > 1
    with torch.no_grad():  # a trained context, not the initial one
        shared.prompt_learner.ctx.add_(torch.randn_like(shared.prompt_learner.ctx) * 0.5)
        full.prompt_learner.ctx.copy_(shared.prompt_learner.ctx)

    dim = clip_model.text_projection.shape[1]
    image_features = torch.randn(8, dim, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(8) % len(CLASSNAMES)
    logits, grad = _logits_and_grad(shared, image_features, labels)
    ref_logits, ref_grad = _logits_and_grad(full, image_features, labels)
    assert grad.abs().max() > 0
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)
    # And the class features are CLIP's own text features when the context is words.
    if "CTX_INIT" in coop:
        with torch.no_grad():
            init = PromptClassifier(_cfg(**coop), CLASSNAMES, clip_model).class_features()
            texts = [f"{coop['CTX_INIT']} {name.replace('_', ' ')}." for name in CLASSNAMES]
            torch.testing.assert_close(init, clip_model.encode_text(clip_model.tokenize(texts)), rtol=1e-4, atol=1e-4)


def test_shared_context_runs_the_prefix_once_and_each_class_over_its_own_tokens(clip_model):
    n_ctx = 16
    model = PromptClassifier(_cfg(N_CTX=n_ctx), CLASSNAMES, clip_model)
    eot = model.prompt_learner.tokenized_prompts.argmax(-1)
    tokens_seen = []  # positions x sequences through the first block's MLP, per call
    hook = clip_model.text_tower.blocks[0].mlp.register_forward_hook(
        lambda module, args, out: tokens_seen.append(args[0].shape[0] * args[0].shape[1]))
    try:
        with torch.no_grad():
            model.class_features()
    finally:
        hook.remove()
    tails = (eot - n_ctx).tolist()  # name tokens + "." + EOT per class
    assert sorted(tokens_seen) == sorted([1 + n_ctx] + [sum(n for n in tails if n == length)
                                                        for length in sorted(set(tails))])
    assert sum(tokens_seen) < len(CLASSNAMES) * (int(eot.max()) + 1) / 2  # vs the truncated path


def test_padded_single_group_used_on_gpus_equals_the_full_path(clip_model):
    """On a GPU every class runs in one group padded to the longest tail; run that grouping
    here on CPU and compare features and context gradients with the 77-token path."""
    torch.manual_seed(0)
    shared = PromptClassifier(_cfg(), CLASSNAMES, clip_model)
    torch.manual_seed(0)
    full = PromptClassifier(_cfg(TRUNCATE_TEXT=False), CLASSNAMES, clip_model)
    learner = shared.prompt_learner
    with torch.no_grad():
        learner.ctx.add_(torch.randn_like(learner.ctx) * 0.5)
        full.prompt_learner.ctx.copy_(learner.ctx)
    groups = shared.shared_context_groups(padded=True)
    assert len(groups) == 1 and groups[0][1].shape[1] == max(shared.tail_lengths) > min(shared.tail_lengths)
    prefix = torch.cat([learner.token_prefix[0], learner.ctx])
    padded = shared.text_encoder.encode_shared_prefix(prefix, groups, learner.n_cls)
    reference = full.class_features()
    torch.testing.assert_close(padded.detach(), reference.detach(), rtol=1e-4, atol=1e-4)
    weights = torch.randn_like(reference)
    (padded * weights).sum().backward()
    grad = learner.ctx.grad.clone()
    (reference * weights).sum().backward()
    assert grad.abs().max() > 0
    torch.testing.assert_close(grad, full.prompt_learner.ctx.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("coop, expected", [
    (dict(), "shared-context"),
    (dict(CSC=True), "truncated"),
    (dict(CLASS_TOKEN_POSITION="middle"), "truncated"),
    (dict(CLASS_TOKEN_POSITION="front"), "truncated"),
    (dict(GRAD_CHECKPOINT=True), "truncated"),
    (dict(SHARED_CONTEXT=False), "truncated"),
    (dict(TRUNCATE_TEXT=False), "full"),
])
def test_text_path_choice(coop, expected):
    assert text_path(_cfg(**coop).TRAINER.COOP) == expected


@pytest.mark.parametrize("coop", [dict(CSC=True), dict(CLASS_TOKEN_POSITION="middle")])
def test_other_layouts_keep_whole_prompts_and_match_the_full_path(clip_model, coop):
    torch.manual_seed(0)
    model = PromptClassifier(_cfg(**coop), CLASSNAMES, clip_model)
    torch.manual_seed(0)
    full = PromptClassifier(_cfg(TRUNCATE_TEXT=False, **coop), CLASSNAMES, clip_model)
    assert model.text_path == "truncated" and model.length_groups == []
    with torch.no_grad():
        torch.testing.assert_close(model.class_features(), full.class_features(), rtol=1e-4, atol=1e-4)
