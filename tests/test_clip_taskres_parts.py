"""TaskRes building blocks: residual arithmetic, ImageNet-A/R row slicing, enhanced base."""
import pytest
import torch

from dassl.utils import save_checkpoint
from dassl.utils.errors import UserError
from tests.tiny_clip import build_tiny_backbone
from trainers.common.classifier import class_features, cosine_logits
from trainers.taskres import TaskResLearner, load_enhanced_text_projection

NAMES = ["golden_retriever", "tabby_cat", "tench"]
TEMPLATE = "a photo of a {}, a type of pet."


@pytest.fixture(scope="module")
def clip_model():
    return build_tiny_backbone("rn", seed=4)


def _raw_base(clip_model):
    return class_features(clip_model, NAMES, TEMPLATE, replace_underscore=False,
                          normalize_each=False, normalize_output=False)


def test_zero_residual_gives_the_zero_shot_logits_of_the_raw_prompts(clip_model):
    learner = TaskResLearner(_raw_base(clip_model), alpha=0.5)
    assert torch.count_nonzero(learner.text_feature_residuals) == 0
    with torch.no_grad():
        prompts = clip_model.encode_text(clip_model.tokenize([TEMPLATE.format(n) for n in NAMES]))
        images = clip_model.encode_image(torch.randn(4, 3, 32, 32))
    zero_shot = cosine_logits(images, prompts, clip_model.logit_scale)
    torch.testing.assert_close(cosine_logits(images, learner(), clip_model.logit_scale), zero_shot)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_scales_the_residual(clip_model, alpha):
    base = _raw_base(clip_model)
    learner = TaskResLearner(base, alpha=alpha)
    residual = torch.randn_like(base)
    with torch.no_grad():
        learner.text_feature_residuals.copy_(residual)
    torch.testing.assert_close(learner(), base + alpha * residual)


def test_only_the_residual_is_a_parameter_and_both_are_saved(clip_model):
    learner = TaskResLearner(_raw_base(clip_model), alpha=0.5)
    assert [n for n, _ in learner.named_parameters()] == ["text_feature_residuals"]
    assert set(learner.state_dict()) == {"base_text_features", "text_feature_residuals"}


def test_full_imagenet_checkpoint_is_cut_to_the_dataset_rows():
    full = TaskResLearner(torch.randn(6, 8), alpha=0.5)
    with torch.no_grad():
        full.text_feature_residuals.normal_()
    rows = torch.tensor([1, 4, 5])
    subset = TaskResLearner(torch.zeros(3, 8), alpha=0.5, source_rows=rows, source_classes=6)
    subset.load_state_dict(full.state_dict())
    assert torch.equal(subset.base_text_features, full.base_text_features[rows])
    assert torch.equal(subset.text_feature_residuals, full.text_feature_residuals[rows])
    own = TaskResLearner(torch.ones(3, 8), alpha=0.5, source_rows=rows, source_classes=6)
    subset.load_state_dict(own.state_dict())  # a checkpoint of the subset itself loads as is
    assert torch.equal(subset.base_text_features, own.base_text_features)


def test_checkpoint_of_another_size_still_fails_loudly():
    subset = TaskResLearner(torch.zeros(3, 8), alpha=0.5, source_rows=torch.tensor([0, 1, 2]),
                            source_classes=6)
    with pytest.raises(RuntimeError, match="size mismatch"):
        subset.load_state_dict(TaskResLearner(torch.zeros(5, 8), alpha=0.5).state_dict())


def test_enhanced_base_replaces_the_text_projection(tmp_path):
    clip_model = build_tiny_backbone("rn", seed=4)
    width, dim = clip_model.text_projection.shape
    weight = torch.randn(dim, width)
    path = save_checkpoint({"state_dict": {"weight": weight}, "epoch": 1}, str(tmp_path),
                           model_name="model.pth.tar")
    before = _raw_base(clip_model)
    load_enhanced_text_projection(clip_model, path)
    assert torch.equal(clip_model.text_projection, weight.t())
    assert not torch.allclose(_raw_base(clip_model), before)


def test_enhanced_base_of_the_wrong_shape_names_the_file(tmp_path):
    clip_model = build_tiny_backbone("rn", seed=4)
    path = save_checkpoint({"state_dict": {"weight": torch.randn(3, 5)}, "epoch": 1}, str(tmp_path),
                           model_name="model.pth.tar")
    with pytest.raises(UserError, match="model.pth.tar.*ENHANCED_BASE.*another backbone"):
        load_enhanced_text_projection(clip_model, path)
    bad = save_checkpoint({"state_dict": {"bias": torch.randn(3)}, "epoch": 1}, str(tmp_path),
                          model_name="other.pth.tar")
    with pytest.raises(UserError, match=r"other.pth.tar.*state_dict\[\"weight\"\]"):
        load_enhanced_text_projection(clip_model, bad)
