"""open_clip backbones behind the Backbone interface, with no download: random weights from
open_clip's own configs (the toolkit's small ones in configs/open_clip, and the real RN50 and
ViT-B-16-SigLIP2), and state dicts saved here.

SigLIP 2's real tokenizer is a Hugging Face hub file that cannot be fetched here: its test feeds
token ids directly, and the tiny SigLIP-style tower (`fewshot-tiny-sigmoid`: no causal mask,
last-token pooling, logit bias) is paired with CLIP's BPE tokenizer, which open_clip ships.
"""
import os

import pytest
import torch

from dassl.config import get_cfg_default
from dassl.config.merge import ConfigError
from tests.tiny_clip import save_tiny_clip
from trainers.common.backbone import apply_model_preprocess, load_backbone
from trainers.common.clip_loader import WeightsFileError, WeightsUnavailable, build_random_clip
from trainers.config import extend_cfg
from trainers.coop import PromptClassifier, text_path
from trainers.common.text_encoder import TextEncoder

TINY = {"rn": "open_clip:fewshot-tiny-rn-quickgelu", "vit": "open_clip:fewshot-tiny-vit-quickgelu"}
SIGMOID = "open_clip:fewshot-tiny-sigmoid"
TEXTS = ["a photo of a dog.", "x", "a very long description of a rather unusual kind of aircraft."]


def _cfg(name, path="", pretrained=True, **coop):
    cfg = extend_cfg(get_cfg_default())
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, cfg.MODEL.BACKBONE.PRETRAINED = name, path, pretrained
    for key, value in coop.items():
        cfg.TRAINER.COOP[key] = value
    return cfg


def _features(backbone, images, texts):
    with torch.no_grad():
        return backbone.encode_image(images.type(backbone.dtype)).float(), \
            backbone.encode_text(backbone.tokenize(texts)).float()


@pytest.mark.parametrize("arch", ["rn", "vit"])
def test_openai_architecture_through_open_clip_equals_clip_from_the_same_file(tmp_path, arch):
    path = save_tiny_clip(tmp_path, arch, seed=4)
    via_clip = load_backbone(_cfg("RN50", path)).float()
    via_open_clip = load_backbone(_cfg(TINY[arch], path))
    assert (via_clip.library, via_open_clip.library) == ("clip", "open_clip")
    assert via_open_clip.architecture == TINY[arch] and via_open_clip.weights == path
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for a, b in zip(_features(via_clip, images, TEXTS), _features(via_open_clip, images, TEXTS)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert torch.equal(via_clip.logit_scale.float(), via_open_clip.logit_scale)
    assert via_open_clip.preprocess == via_clip.preprocess
    assert via_open_clip.text_start == via_clip.text_start == 1


def test_released_rn50_architecture_loads_unchanged_into_open_clip_rn50_quickgelu(tmp_path):
    path = str(tmp_path / "rn50.pt")
    torch.save({k: v.float() for k, v in build_random_clip("RN50", seed=1).state_dict().items()}, path)
    via_clip = load_backbone(_cfg("RN50", path)).float()
    via_open_clip = load_backbone(_cfg("open_clip:RN50-quickgelu", path))
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for a, b in zip(_features(via_clip, images, TEXTS[:2]), _features(via_open_clip, images, TEXTS[:2])):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [TINY["rn"], TINY["vit"], SIGMOID, "RN50"])
def test_embedding_path_equals_token_path(tmp_path, name):
    path = save_tiny_clip(tmp_path, "rn", seed=2) if name == "RN50" else ""
    backbone = load_backbone(_cfg(name, path, pretrained=bool(path))).float()
    tokens = backbone.tokenize(TEXTS)
    with torch.no_grad():
        expected = backbone.encode_text(tokens)
        got = backbone.encode_text_embeddings(backbone.token_embedding(tokens), backbone.pool_index(tokens))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_sigmoid_style_tower_pools_the_last_position_attends_everywhere_and_has_a_bias():
    backbone = load_backbone(_cfg(SIGMOID, pretrained=False))
    tokens = backbone.tokenize(TEXTS)
    assert tokens.shape == (3, 32) and backbone.context_length == 32
    assert backbone.pool_index(tokens).tolist() == [31, 31, 31]
    assert not backbone.text_tower.causal and backbone.text_tower.attn_mask(32, torch.float32, "cpu") is None
    assert isinstance(backbone.logit_bias, torch.nn.Parameter)
    assert backbone.text_tower.batch_first and backbone.is_vit and len(backbone.vision_tower.blocks) == 2
    # Padding after the text changes the feature (nothing is masked), unlike in a causal tower.
    embeddings = backbone.token_embedding(tokens)
    noisy = embeddings.clone()
    noisy[:, 20:] += torch.randn_like(noisy[:, 20:])
    with torch.no_grad():
        assert not torch.allclose(backbone.encode_text_embeddings(noisy, backbone.pool_index(tokens)),
                                  backbone.encode_text(tokens))
    with pytest.raises(ValueError, match="without a causal mask.*truncate=False"):
        TextEncoder(backbone, truncate=True)


def test_siglip2_builds_offline_with_its_last_token_tower_and_preprocessing(monkeypatch):
    """The real ViT-B-16-SigLIP2 (random weights). Its Gemma tokenizer is a hub file: token ids
    are fed directly, and asking for the tokenizer offline gives the one-line remedy."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _cfg("open_clip:ViT-B-16-SigLIP2/webli", pretrained=False)
    apply_model_preprocess(cfg)
    assert tuple(cfg.INPUT.SIZE) == (224, 224) and list(cfg.INPUT.PIXEL_MEAN) == [0.5, 0.5, 0.5]
    assert cfg.INPUT.RESIZE_MODE == "squash"
    # our test transform is open_clip's own for this model (both sides resized, no crop)
    import numpy as np
    import open_clip
    from PIL import Image
    from dassl.data.transforms import build_transform
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    theirs = open_clip.image_transform(224, is_train=False, mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD,
                                       interpolation=cfg.INPUT.INTERPOLATION, resize_mode="squash")
    ours = build_transform(cfg, is_train=False, choices=["normalize"])
    torch.testing.assert_close(ours(image), theirs(image), rtol=0, atol=1e-6)
    backbone = load_backbone(cfg)
    assert backbone.embed_dim == 768 and backbone.context_length == 64 and backbone.logit_bias is not None
    assert not backbone.text_tower.causal and backbone.resize_mode == "squash"
    tokens = torch.randint(3, 256000, (2, 64), generator=torch.Generator().manual_seed(0))
    tokens[:, 9:] = 0  # padding after 9 text tokens
    assert backbone.pool_index(tokens).tolist() == [63, 63]
    with torch.no_grad():
        torch.testing.assert_close(
            backbone.encode_text_embeddings(backbone.token_embedding(tokens), backbone.pool_index(tokens)),
            backbone.encode_text(tokens), rtol=1e-5, atol=1e-5)
        assert backbone.encode_image(torch.zeros(1, 3, 224, 224)).shape == (1, 768)
    with pytest.raises(Exception, match="tokenizer of open_clip:ViT-B-16-SigLIP2/webli is the Hugging Face "
                                        "tokenizer timm/ViT-B-16-SigLIP2.*huggingface-cli download"):
        backbone.tokenize(["a photo of a dog."])


@pytest.mark.parametrize("name", [TINY["rn"], SIGMOID])
def test_coop_prompt_injection_equals_encode_text_of_the_literal_prompt(name):
    """CTX_INIT words as the context: the learned-prompt path must give the model's own features,
    for EOT pooling (causal, truncated) and last-token pooling (no causal mask, full length)."""
    backbone = load_backbone(_cfg(name, pretrained=False))
    classnames = ["dog", "golden_retriever", "Boeing 747-400"]
    for position in ("end", "middle", "front"):
        cfg = _cfg(name, pretrained=False, CTX_INIT="a photo of a", CLASS_TOKEN_POSITION=position)
        model = PromptClassifier(cfg, classnames, backbone)
        assert model.text_path == ("full" if name == SIGMOID else
                                   "shared-context" if position == "end" else "truncated")
        words = "a photo of a"
        texts = {"end": [f"{words} {c.replace('_', ' ')}." for c in classnames],
                 "front": [f"{c.replace('_', ' ')} {words}." for c in classnames],
                 "middle": [f"a photo {c.replace('_', ' ')} of a." for c in classnames]}[position]
        with torch.no_grad():
            torch.testing.assert_close(model.class_features(), backbone.encode_text(backbone.tokenize(texts)),
                                       rtol=1e-5, atol=1e-5)
    assert text_path(_cfg(name).TRAINER.COOP, backbone.text_tower) == ("full" if name == SIGMOID else "shared-context")


def test_preprocessing_of_the_model_replaces_the_config_values(capsys):
    cfg = _cfg("open_clip:ViT-B-16/laion2b_s34b_b88k")
    cfg.freeze()
    apply_model_preprocess(cfg)
    assert tuple(cfg.INPUT.SIZE) == (224, 224) and cfg.INPUT.INTERPOLATION == "bicubic" and cfg.is_frozen()
    assert list(cfg.INPUT.PIXEL_STD) == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    out = capsys.readouterr().out
    assert "Preprocessing of open_clip:ViT-B-16/laion2b_s34b_b88k: 224x224" in out
    assert "INPUT.INTERPOLATION bilinear -> bicubic" in out  # the engine default was replaced


# ----------------------------------------------------------------------------- bad inputs
def test_unknown_architecture_and_tag_name_what_exists():
    with pytest.raises(ConfigError, match="no architecture 'ViT-B-61'.*close names: .*ViT-B-16"):
        load_backbone(_cfg("open_clip:ViT-B-61/openai"))
    with pytest.raises(ConfigError, match="no weights 'laion9b' for ViT-B-16; its tags: .*laion2b_s34b_b88k"):
        load_backbone(_cfg("open_clip:ViT-B-16/laion9b"))
    with pytest.raises(ConfigError, match="names no pretrained weights.*laion2b_s34b_b88k.*MODEL.BACKBONE.PATH"):
        load_backbone(_cfg("open_clip:ViT-B-16"))
    with pytest.raises(ConfigError, match="transformers model"):
        load_backbone(_cfg("open_clip:roberta-ViT-B-32", pretrained=False))


def test_missing_weights_offline_name_the_file_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.cache/clip of URL-hosted weights: empty
    with pytest.raises(WeightsUnavailable) as err:
        load_backbone(_cfg("open_clip:ViT-B-16/laion2b_s34b_b88k"))
    message = str(err.value)
    assert "laion/CLIP-ViT-B-16-laion2B-s34B-b88K" in message and "open_clip_model.safetensors" in message
    assert "MODEL.BACKBONE.PATH" in message and "offline" in message
    with pytest.raises(WeightsUnavailable, match=r"Download https://openaipublic.*RN50.pt\n  and put the file at "
                                                 + str(tmp_path)):
        from trainers.common.open_clip_loader import resolve_weights
        from open_clip import get_pretrained_cfg
        resolve_weights("open_clip:RN50/openai", dict(get_pretrained_cfg("RN50", "openai"), hf_hub=""))


def test_state_dict_of_another_architecture_names_file_architecture_and_keys(tmp_path):
    vit = save_tiny_clip(tmp_path, "vit", seed=0)
    with pytest.raises(WeightsFileError, match=f"{vit} does not match the open_clip architecture "
                                               f"fewshot-tiny-rn-quickgelu: .*missing key.*first: visual\\."):
        load_backbone(_cfg(TINY["rn"], vit))
    bad = tmp_path / "text.pt"
    bad.write_text("not weights")
    with pytest.raises(WeightsFileError, match="cannot be read"):
        load_backbone(_cfg(TINY["rn"], str(bad)))
    state = {k: v for k, v in torch.load(save_tiny_clip(tmp_path, "rn", seed=0)).items()}
    state["text_projection"] = state["text_projection"][:, :32]
    wrong = str(tmp_path / "wrong_shape.pt")
    torch.save(state, wrong)
    with pytest.raises(WeightsFileError, match="does not hold weights of the open_clip architecture.*size mismatch"):
        load_backbone(_cfg(TINY["rn"], wrong))
    assert os.path.isfile(wrong)


def test_openai_torchscript_archive_loads_into_the_quickgelu_architecture(tmp_path):
    """OpenAI ships TorchScript archives; open_clip's *-quickgelu architectures take them."""
    path = save_tiny_clip(tmp_path, "vit", seed=2)
    params = torch.load(path)
    module = torch.nn.Module()
    for key, value in params.items():  # flat names as in the OpenAI archives
        parent = module
        *parts, leaf = key.split(".")
        for part in parts:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.register_buffer(leaf, value)
    archive = str(tmp_path / "jit.pt")
    torch.jit.save(torch.jit.script(module), archive)
    from_archive = load_backbone(_cfg(TINY["vit"], archive))
    from_state_dict = load_backbone(_cfg(TINY["vit"], path))
    assert torch.equal(from_archive.text_projection, from_state_dict.text_projection)


def _hf_tokenizer_model(tmp_path):
    """A SigLIP-style tiny model whose tokenizer is a Hugging Face one made here (T5-like: no start
    token, an end token, padding id 0), registered with open_clip as a custom config."""
    import json

    import open_clip
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "a photo of dog golden retriever boeing 747 - 400 . x".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation apart
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder = tmp_path / "tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(folder))
    with open(os.path.join(os.path.dirname(__file__), "..", "configs", "open_clip", "fewshot-tiny-sigmoid.json")) as f:
        config = json.load(f)
    config["text_cfg"].update(hf_tokenizer_name=str(folder), vocab_size=len(vocab))
    path = tmp_path / "fewshot-test-hf-tokenizer.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(str(path))
    return "open_clip:fewshot-test-hf-tokenizer"


def test_coop_prompt_injection_with_a_tokenizer_without_start_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = _hf_tokenizer_model(tmp_path)
    backbone = load_backbone(_cfg(name, pretrained=False))
    tokens = backbone.tokenize(["a photo of a dog ."])
    assert backbone.text_start == 0 and tokens[0, :6].tolist() == [3, 4, 5, 3, 6, 13] and tokens[0, 6] == 1
    assert backbone.token_counts(["golden retriever", "boeing 747-400"]) == [2, 4]
    classnames = ["dog", "golden_retriever", "boeing 747-400"]
    names = ("dog", "golden retriever", "boeing 747-400")
    for position, texts in (("end", [f"a photo of a {c}." for c in names]),
                            ("middle", [f"a photo {c} of a." for c in names])):
        cfg = _cfg(name, pretrained=False, CTX_INIT="a photo of a", CLASS_TOKEN_POSITION=position)
        model = PromptClassifier(cfg, classnames, backbone)
        assert model.prompt_learner.n_ctx == 4 and model.text_path == "full"
        with torch.no_grad():
            torch.testing.assert_close(model.class_features(), backbone.encode_text(backbone.tokenize(texts)),
                                       rtol=1e-5, atol=1e-5)


def test_train_py_offline_without_the_weights_is_one_message_and_exit_2(tmp_path):
    from datasets.demo_shapes_generate import TASKS, generate
    from tests.engine_helpers import run_train
    root = str(tmp_path / "data")
    generate(root, 32, 1, 1, 1, task=TASKS["demo_shapes"])
    proc = run_train(["--root", root, "--trainer", "ZeroshotCLIP", "--eval-only", "--output-dir", str(tmp_path / "out"),
                      "--dataset-config-file", "configs/datasets/demo_shapes.yaml",
                      "--config-file", "configs/trainers/ZeroshotCLIP/rn50.yaml",
                      "MODEL.BACKBONE.NAME", "open_clip:ViT-B-32/laion2b_s34b_b79k"], check=False,
                     env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "open_clip weights for open_clip:ViT-B-32/laion2b_s34b_b79k" in error[0]
    assert "huggingface-cli download laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in proc.stderr
