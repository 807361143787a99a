"""Loading CLIP: explicit file, cache by name with sha256, offline error, random weights."""

import pytest
import torch
from clip.clip import _MODELS
from yacs.config import CfgNode as CN

from tests.tiny_clip import build_tiny_clip, save_tiny_clip
from trainers.common.clip_loader import (CLIP_ARCHITECTURES, build_random_clip, load_clip_to_cpu,
                                         resolve_weights_file)


def _cfg(name="RN50", path="", pretrained=True):
    cfg = CN()
    cfg.MODEL = CN()
    cfg.MODEL.BACKBONE = CN()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.PATH = path
    cfg.MODEL.BACKBONE.PRETRAINED = pretrained
    return cfg


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("CLIP_OFFLINE", "1")
    return cache


@pytest.mark.parametrize("arch", ["rn", "vit"])
def test_explicit_path_loads_the_saved_weights_as_fp16_eval(tmp_path, arch, capsys):
    path = save_tiny_clip(tmp_path, arch=arch, seed=5)
    model = load_clip_to_cpu(_cfg(path=path))
    assert f"Loading CLIP weights from {path}" in capsys.readouterr().out
    assert not model.training
    assert model.text_projection.dtype == torch.float16
    reference = build_tiny_clip(arch, seed=5).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value.float(), reference[key].half().float()), key


def test_torchscript_archive_is_read_through_jit(tmp_path):
    """OpenAI ships TorchScript archives; their state_dict() must be what gets built."""
    tiny = build_tiny_clip("vit", seed=2)
    params = {k: v.half() for k, v in tiny.state_dict().items()}
    module = torch.nn.Module()
    for key, value in params.items():  # flat names as in the OpenAI archives
        parent = module
        *path, leaf = key.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.register_buffer(leaf, value)
    archive = tmp_path / "jit.pt"
    torch.jit.save(torch.jit.script(module), str(archive))
    model = load_clip_to_cpu(_cfg(path=str(archive)))
    assert torch.equal(model.text_projection, params["text_projection"])


def test_missing_explicit_path_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.PATH"):
        load_clip_to_cpu(_cfg(path=str(tmp_path / "nope.pt")))


def test_non_clip_file_is_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="text_projection"):
        load_clip_to_cpu(_cfg(path=str(path)))


def test_offline_error_gives_url_and_target_path(offline_cache):
    with pytest.raises(RuntimeError) as err:
        load_clip_to_cpu(_cfg("ViT-B/16"))
    message = str(err.value)
    assert _MODELS["ViT-B/16"] in message
    assert str(offline_cache / "ViT-B-16.pt") in message


def test_cached_file_with_wrong_checksum_is_not_used(offline_cache):
    offline_cache.mkdir()
    (offline_cache / "RN50.pt").write_bytes(b"not the weights")
    with pytest.raises(RuntimeError, match="sha256"):
        resolve_weights_file("RN50")


def test_unknown_name_lists_the_models():
    with pytest.raises(ValueError, match="ViT-B/32"):
        resolve_weights_file("RN51")


def test_random_weights_are_seeded_logged_and_leave_global_rng_alone(capsys):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    model = load_clip_to_cpu(_cfg("ViT-B/32", pretrained=False))
    out = capsys.readouterr().out
    assert out.count("RANDOM weights") == 1
    assert torch.equal(torch.rand(1), expected_next)  # the run's random stream is untouched
    again = build_random_clip("ViT-B/32")
    assert torch.equal(model.visual.proj, again.visual.proj)
    assert model.visual.proj.dtype == torch.float16 and not model.training
    assert model.visual.input_resolution == CLIP_ARCHITECTURES["ViT-B/32"]["image_resolution"]


def test_random_weights_and_path_together_are_a_conflict(tmp_path):
    with pytest.raises(ValueError, match="PRETRAINED"):
        load_clip_to_cpu(_cfg(path=save_tiny_clip(tmp_path), pretrained=False))


def test_architecture_table_covers_every_released_model():
    assert set(CLIP_ARCHITECTURES) == set(_MODELS)
