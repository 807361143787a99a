"""CoOp prompt construction and text path on a tiny real CLIP (no training loop here)."""
import clip
import pytest
import torch
from clip.model import convert_weights

from dassl.config import get_cfg_default
from tests.tiny_clip import build_tiny_clip
from trainers.common.backbone import backbone_from_clip_model
from trainers.config import extend_cfg
from trainers.coop import PromptClassifier, PromptLearner

# Names of different token lengths; "_" must become a space.
CLASSNAMES = ["golden_retriever", "cat", "a rather long space shuttle name"]


def _cfg(**coop):
    cfg = extend_cfg(get_cfg_default())
    for key, value in coop.items():
        cfg.TRAINER.COOP[key] = value
    return cfg


@pytest.fixture(scope="module")
def clip_model():
    return backbone_from_clip_model(build_tiny_clip("rn", seed=1), "tiny-rn")


def _token_embeddings(clip_model, text):
    """Embeddings of `text`'s tokens without SOS/EOT, looked up independently of CoOp."""
    tokens = clip.tokenize(text)[0]
    n = int(tokens.argmax()) - 1
    with torch.no_grad():
        return clip_model.token_embedding(tokens[1:1 + n])


def test_ctx_init_equals_clip_encode_text_of_literal_prompt(clip_model):
    model = PromptClassifier(_cfg(CTX_INIT="a photo of a"), CLASSNAMES, clip_model)
    assert model.prompt_learner.n_ctx == 4 and model.prompt_learner.ctx.shape == (4, 64)
    texts = [f"a photo of a {name.replace('_', ' ')}." for name in CLASSNAMES]
    with torch.no_grad():
        expected = clip_model.encode_text(clip.tokenize(texts))
        got = model.class_features()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_csc_with_ctx_init_gives_every_class_the_words(clip_model):
    learner = PromptLearner(_cfg(CTX_INIT="a photo of a", CSC=True), CLASSNAMES, clip_model)
    assert learner.ctx.shape == (3, 4, 64)
    words = _token_embeddings(clip_model, "a photo of a")
    for i in range(3):
        torch.testing.assert_close(learner.ctx[i].detach(), words)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_class_token_position_places_each_embedding(clip_model, position, csc):
    n_ctx, half = 5, 2  # odd on purpose: middle splits 2 | 3
    learner = PromptLearner(_cfg(N_CTX=n_ctx, CSC=csc, CLASS_TOKEN_POSITION=position),
                            CLASSNAMES, clip_model)
    with torch.no_grad():
        prompts = learner()
        sos, eot, pad = clip_model.token_embedding(torch.tensor([49406, 49407, 0]))
    dot = _token_embeddings(clip_model, ".")[0]
    assert prompts.shape == (3, 77, 64)
    for i, name in enumerate(CLASSNAMES):
        ctx = learner.ctx[i] if csc else learner.ctx
        name_emb = _token_embeddings(clip_model, name.replace("_", " "))
        if position == "end":
            pieces = [ctx, name_emb]
        elif position == "middle":
            pieces = [ctx[:half], name_emb, ctx[half:]]
        else:
            pieces = [name_emb, ctx]
        expected = torch.cat([sos[None], *pieces, dot[None], eot[None]])
        used = expected.shape[0]
        torch.testing.assert_close(prompts[i, :used], expected.detach(), rtol=0, atol=0)
        assert torch.equal(prompts[i, used:], pad.expand(77 - used, -1))
        # The EOT the text encoder reads is where the prompt's EOT embedding now sits.
        assert int(learner.tokenized_prompts[i].argmax()) == used - 1


def _features_and_grad(clip_model, classnames, **coop):
    torch.manual_seed(0)  # same context init for every variant compared
    model = PromptClassifier(_cfg(**coop), classnames, clip_model)
    features = model.class_features()
    features.pow(2).sum().backward()
    return features.detach(), model.prompt_learner.ctx.grad


@pytest.mark.parametrize("position,csc", [("end", False), ("middle", False), ("front", False),
                                          ("end", True), ("front", True)])
def test_truncated_text_path_equals_full_length(clip_model, position, csc):
    common = dict(N_CTX=4, CSC=csc, CLASS_TOKEN_POSITION=position)
    full, full_grad = _features_and_grad(clip_model, CLASSNAMES, TRUNCATE_TEXT=False, **common)
    cut, cut_grad = _features_and_grad(clip_model, CLASSNAMES, TRUNCATE_TEXT=True, **common)
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cut_grad, full_grad, rtol=1e-3, atol=1e-5)  # float rounding


def test_gradient_checkpointing_gives_same_context_gradient(clip_model):
    plain, plain_grad = _features_and_grad(clip_model, CLASSNAMES, N_CTX=4, CSC=True)
    ckpt, ckpt_grad = _features_and_grad(clip_model, CLASSNAMES, N_CTX=4, CSC=True,
                                         GRAD_CHECKPOINT=True)
    torch.testing.assert_close(ckpt, plain)
    torch.testing.assert_close(ckpt_grad, plain_grad)
    assert plain_grad.abs().sum() > 0


def test_fp16_clip_keeps_fp32_context_and_adam_stays_finite():
    """Adam's eps (1e-8) is 0 in fp16; the context must not be a half tensor."""
    clip_half = build_tiny_clip("rn", seed=2).eval()
    convert_weights(clip_half)  # fp16 exactly as clip.model.build_model leaves it
    model = PromptClassifier(_cfg(N_CTX=4), CLASSNAMES, backbone_from_clip_model(clip_half, "tiny-rn"))
    ctx = model.prompt_learner.ctx
    assert ctx.dtype == torch.float32 and model.prompt_learner().dtype == torch.float16
    optim = torch.optim.Adam([ctx], lr=1e-3)
    for _ in range(2):  # Adam's second step divides by sqrt(v) + eps with tiny v
        optim.zero_grad()
        model.class_features().float().pow(2).sum().backward()
        optim.step()
    assert torch.isfinite(ctx).all()


def test_clear_errors_for_bad_settings(clip_model):
    with pytest.raises(ValueError, match="CLASS_TOKEN_POSITION = 'left'"):
        PromptLearner(_cfg(CLASS_TOKEN_POSITION="left"), CLASSNAMES, clip_model)
    with pytest.raises(ValueError, match="N_CTX = 0"):
        PromptLearner(_cfg(N_CTX=0), CLASSNAMES, clip_model)
    with pytest.raises(ValueError, match="does not fit the 77 tokens of .*N_CTX"):
        PromptLearner(_cfg(N_CTX=16), ["word " * 70], clip_model)


def test_state_dict_is_only_the_context_and_reference_checkpoints_load(clip_model):
    learner = PromptLearner(_cfg(N_CTX=4), CLASSNAMES, clip_model)
    assert list(learner.state_dict()) == ["ctx"]
    own_suffix = learner.token_suffix.clone()
    # Reference CoOp saves the fixed embeddings too (here: of another class set, as when
    # base-class context is evaluated on new classes); they must be ignored, not loaded.
    reference = {"ctx": torch.randn(4, 64), "token_prefix": torch.zeros(7, 1, 64),
                 "token_suffix": torch.zeros(7, 72, 64)}
    learner.load_state_dict(reference)  # strict
    assert torch.equal(learner.ctx.detach(), reference["ctx"])
    assert torch.equal(learner.token_suffix, own_suffix)
