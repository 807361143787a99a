"""Class features from names + templates, and the cosine logits every trainer shares."""
import clip
import pytest
import torch

from tests.tiny_clip import build_tiny_clip
from trainers.common.backbone import backbone_from_clip_model
from trainers.common.classifier import class_features, cosine_logits, l2_normalize
from trainers.common.templates import (DATASET_TEMPLATES, IMAGENET_TEMPLATES_SELECT,
                                       dataset_template)

NAMES = ["golden_retriever", "tabby cat", "space_shuttle"]
TEMPLATES = ["a photo of a {}.", "art of the {}."]


@pytest.fixture(scope="module")
def model():
    return backbone_from_clip_model(build_tiny_clip("rn", seed=1), "tiny-rn")


def _encode(model, texts):
    with torch.no_grad():
        return model.encode_text(clip.tokenize(texts)).float()


def test_single_template_matches_encode_text_and_is_normalised(model):
    got = class_features(model, NAMES, "a photo of a {}.")
    expected = l2_normalize(_encode(model, [f"a photo of a {n.replace('_', ' ')}." for n in NAMES]))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(NAMES)))


def test_raw_names_keep_underscores_and_raw_average_is_unnormalised(model):
    got = class_features(model, NAMES, TEMPLATES, replace_underscore=False,
                         normalize_each=False, normalize_output=False)
    for row, name in zip(got, NAMES):
        expected = _encode(model, [t.format(name) for t in TEMPLATES]).mean(0)
        torch.testing.assert_close(row, expected)
    assert not torch.allclose(got.norm(dim=-1), torch.ones(len(NAMES)))  # stored unnormalised

def test_normalise_each_before_averaging(model):
    got = class_features(model, NAMES, TEMPLATES, normalize_output=False)
    name = NAMES[2].replace("_", " ")
    expected = l2_normalize(_encode(model, [t.format(name) for t in TEMPLATES])).mean(0)
    torch.testing.assert_close(got[2], expected)


def test_batching_does_not_change_the_result(model):
    whole = class_features(model, NAMES, TEMPLATES, batch_size=1000)
    torch.testing.assert_close(class_features(model, NAMES, TEMPLATES, batch_size=1), whole)


def test_cosine_logits_are_scaled_cosines(model):
    image = torch.randn(4, 64)
    classes = torch.randn(3, 64) * 7
    logits = cosine_logits(image, classes, model.logit_scale)
    cos = torch.nn.functional.cosine_similarity(image[:, None], classes[None], dim=-1)
    torch.testing.assert_close(logits, model.logit_scale.exp() * cos)
    assert logits.dtype == torch.float32


def test_templates_table():
    assert dataset_template("OxfordPets") == "a photo of a {}, a type of pet."
    assert dataset_template("EuroSAT") == "a centered satellite photo of {}."
    assert dataset_template("ImageNetR") == "a photo of a {}."
    assert dataset_template("MyImageFolder") == "a photo of a {}."  # generic datasets
    benchmark = ["OxfordPets", "OxfordFlowers", "FGVCAircraft", "DescribableTextures", "EuroSAT",
                 "StanfordCars", "Food101", "SUN397", "Caltech101", "UCF101", "ImageNet",
                 "ImageNetSketch", "ImageNetV2", "ImageNetA", "ImageNetR"]
    assert set(benchmark) <= set(DATASET_TEMPLATES) and len(IMAGENET_TEMPLATES_SELECT) == 7
    assert all(t.count("{}") == 1 for t in (*DATASET_TEMPLATES.values(), *IMAGENET_TEMPLATES_SELECT))
