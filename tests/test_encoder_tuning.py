"""Encoder tuning (CLIP-LoRA, CLIP-SVD, 2SFS): the surgery leaves CLIP's outputs unchanged at
initialisation; the trainers run through train.py on the demo data with a real tiny ViT CLIP
(random weights), are deterministic per seed, save only the trained parameters, reload them for
--eval-only, resume after a kill to the same result, and refuse bad input with one message."""
import os
import re
import signal

import clip
import pytest
import torch
from clip.model import CLIP

from datasets.demo_shapes_generate import TASKS, generate
from tests.engine_helpers import REPO, run_train, train_killed_at_log_line
from tests.tiny_clip import save_tiny_clip
from trainers.common.clip_loader import CLIP_ARCHITECTURES, TOY_ARCHITECTURES
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.encoder_surgery import (AdaptedAttention, add_lora, add_singular_values,
                                             block_layernorm_parameters, vision_tower)
from trainers.common.encoder_trainer import EncoderTuningTrainer

METHODS = {"CLIPLoRA": "CLIP_LORA", "CLIPSVD": "CLIP_SVD", "TwoStage": "TWO_STAGE"}


def _model(arch, seed=0):
    torch.manual_seed(seed)
    return CLIP(**arch).eval()


@torch.no_grad()
def _logits(model, images, tokens):
    img = model.encode_image(images)
    txt = model.encode_text(tokens)
    img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
    return 100 * img @ txt.t()


def _inputs(arch):
    torch.manual_seed(1)
    side = arch["image_resolution"]
    tokens = clip.tokenize(["a photo of a circle.", "a photo of a red square with stripes.", "x"])
    return torch.randn(2, 3, side, side), tokens


@pytest.mark.parametrize("surgery", ["lora", "svd", "layernorm"])
def test_surgery_leaves_tiny_vit_logits_unchanged(surgery):
    arch = TOY_ARCHITECTURES["tiny-vit"]
    model = _model(arch)
    images, tokens = _inputs(arch)
    before = _logits(model, images, tokens)
    if surgery == "lora":
        trained = add_lora(model, ("text", "vision"), ("q", "k", "v", "o"), rank=2, alpha=1, dropout=0.25)
    elif surgery == "svd":
        trained = add_singular_values(model, ("text", "vision"), ("q", "k", "v", "o"))
    else:
        trained = block_layernorm_parameters(model, ("text", "vision"))
    assert trained
    after = _logits(model, images, tokens)
    assert torch.allclose(before, after, rtol=1e-5, atol=1e-4), (before - after).abs().max()
    if surgery != "layernorm":  # the attention really runs through the wrapper
        assert all(isinstance(b.attn, AdaptedAttention) for b in model.transformer.resblocks)


def test_lora_leaves_vit_b16_logits_unchanged_and_trains_only_its_matrices():
    model = _model(CLIP_ARCHITECTURES["ViT-B/16"])
    images, tokens = _inputs(CLIP_ARCHITECTURES["ViT-B/16"])
    images = images[:1]
    before = _logits(model, images, tokens)
    trained = add_lora(model, ("text", "vision"), ("q", "k", "v"), rank=2, alpha=1, dropout=0.25)
    assert torch.allclose(before, _logits(model, images, tokens), rtol=1e-5, atol=1e-4)
    # 2 x rank x width per matrix, q k v, 12 blocks per encoder
    assert sum(p.numel() for p in trained.values()) == 3 * 12 * 2 * 2 * (768 + 512) == 184_320


def test_rn50_text_tower_takes_lora_and_its_image_tower_has_no_blocks():
    model = _model(TOY_ARCHITECTURES["tiny-rn"])
    _, tokens = _inputs(TOY_ARCHITECTURES["tiny-rn"])
    with torch.no_grad():
        before = model.encode_text(tokens)
        add_lora(model, ("text", "vision"), ("q", "k", "v"), rank=2, alpha=1, dropout=0.0)
        after = model.encode_text(tokens)
    assert vision_tower(model).blocks is None
    assert torch.allclose(before, after, rtol=1e-5, atol=1e-5)


def test_two_stage_classifier_loads_for_other_classes_with_their_names():
    from trainers.two_stage import SelectiveClassifier
    trained = SelectiveClassifier(["cat", "dog", "owl"], 4)
    trained.weight.data.normal_()
    on_new = SelectiveClassifier(["car", "bus"], 4)
    on_new.load_state_dict(trained.state_dict())
    assert on_new.classnames == ["cat", "dog", "owl"] and torch.equal(on_new.weight, trained.weight)


def test_encoder_tuning_never_uses_the_frozen_feature_cache():
    assert not issubclass(EncoderTuningTrainer, FrozenCLIPTrainer)


# ---- train.py runs ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoder_tuning")
    data = str(root / "data")
    generate(data, 32, 16, 1, 20, task=TASKS["demo_shapes"])
    return dict(root=root, data=data, clip=save_tiny_clip(str(root), arch="vit"))


def _args(world, trainer, out, *opts, seed=1, iters=12, flags=()):
    return ["--root", world["data"], "--seed", str(seed), "--trainer", trainer, "--output-dir", str(out),
            "--config-file", os.path.join(REPO, "configs", "trainers", trainer, "vit_b16.yaml"), *flags,
            "DATASET.NAME", "DemoShapes", "DATASET.NUM_SHOTS", "16", "INPUT.SIZE", "(32, 32)",
            "MODEL.BACKBONE.PATH", world["clip"], "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TEST.BATCH_SIZE", "64", f"TRAINER.{METHODS[trainer]}.ITERS", str(iters), *opts]


def _accuracy(out):
    import json
    with open(os.path.join(str(out), "result.json")) as f:
        return json.load(f)["accuracy"]


def _saved(out, model="adapter"):
    folder = os.path.join(str(out), model)
    name = open(os.path.join(folder, "checkpoint")).read().strip()
    return os.path.join(folder, name)


def _eval_flags(out):
    epoch = _saved(out).rsplit("-", 1)[1]
    return ("--eval-only", "--model-dir", str(out), "--load-epoch", epoch)


def _state(out, model="adapter"):
    return torch.load(_saved(out, model), map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("trainer", list(METHODS))
def test_trains_deterministically_saves_small_and_reloads_for_eval_only(world, trainer, tmp_path):
    first, second, evaluated = tmp_path / "a", tmp_path / "b", tmp_path / "eval"
    log = run_train(_args(world, trainer, first)).stdout
    run_train(_args(world, trainer, second))
    assert "Feature cache" not in log and "Image encoder passes" not in log
    assert _accuracy(first) == _accuracy(second)
    state = _state(first)
    assert state.keys() == _state(second).keys()
    for key, value in state.items():
        if torch.is_tensor(value):
            assert torch.equal(value, _state(second)[key]), key
    # only the trained parameters (plus the signature): kilobytes, no CLIP weight
    n_params = sum(v.numel() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())
    assert n_params < 5_000 and not any("in_proj" in k or "c_fc.weight" in k for k in state)
    run_train(_args(world, trainer, evaluated, flags=_eval_flags(first)))
    assert _accuracy(evaluated) == _accuracy(first)


def test_lora_training_changes_the_adapters_and_seeds_differ(world, tmp_path):
    run_train(_args(world, "CLIPLoRA", tmp_path / "s1"))
    run_train(_args(world, "CLIPLoRA", tmp_path / "s2", seed=2))
    one, two = _state(tmp_path / "s1"), _state(tmp_path / "s2")
    b = [k for k in one if k.endswith("lora_B")]
    assert b and any(one[k].abs().sum() > 0 for k in b)  # B left zero
    assert not torch.equal(one[b[0]], two[b[0]])


@pytest.mark.slow
@pytest.mark.timeout(2400)  # three runs of 10 passes each, slow on a loaded machine
@pytest.mark.parametrize("trainer", ["CLIPLoRA", "TwoStage"])
def test_resume_after_a_kill_ends_identical(world, trainer, tmp_path):
    # 30 iterations = 10 passes of 3 batches (2SFS: stage 1 in passes 1-6, stage 2 in 7-10)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    opts = ("TRAIN.RESUME_EVERY_MINUTES", "0", "TRAIN.PRINT_FREQ", "1")
    run_train(_args(world, trainer, reference, *opts, iters=30), timeout=1200)
    code = train_killed_at_log_line(_args(world, trainer, killed, *opts, iters=30), re.escape("epoch [7/10]"),
                                    timeout=1200)
    assert code == -signal.SIGKILL
    resumed = run_train(_args(world, trainer, killed, *opts, iters=30), timeout=1200).stdout
    start = int(re.search(r"resuming after epoch (\d+)", resumed).group(1))
    assert 5 <= start < 10
    assert _accuracy(killed) == _accuracy(reference)
    models = ["adapter"] + (["classifier"] if trainer == "TwoStage" else [])
    for model in models:
        for key, value in _state(reference, model).items():
            if torch.is_tensor(value):
                assert torch.equal(value, _state(killed, model)[key]), (model, key)


def _error(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize("trainer", list(METHODS))
def test_a_resnet_backbone_is_refused_with_the_vits_that_work(world, trainer, tmp_path):
    # by name, refused before anything loads (a weights file, when given, decides the architecture)
    args = _args(world, trainer, tmp_path / "rn", "MODEL.BACKBONE.NAME", "RN50", "MODEL.BACKBONE.PATH", "")
    message = _error(run_train(args, check=False, timeout=900))
    assert "MODEL.BACKBONE.NAME = RN50" in message and "ViT-B/16" in message


def test_a_resnet_weights_file_is_refused_too(world, tmp_path):
    rn = save_tiny_clip(str(tmp_path), arch="rn")
    args = _args(world, "CLIPLoRA", tmp_path / "rn", "MODEL.BACKBONE.PATH", rn)
    message = _error(run_train(args, check=False, timeout=900))
    assert "MODEL.BACKBONE.PATH" in message and "tiny-rn (a ResNet)" in message and "ViT backbone" in message


@pytest.mark.parametrize("opts, fragment", [
    (("TRAINER.CLIP_LORA.RANK", "0"), "TRAINER.CLIP_LORA.RANK = 0"),
    (("TRAINER.CLIP_LORA.RANK", "100"), "exceeds the attention width"),
    (("TRAINER.CLIP_LORA.PARAMS", "('q', 'x')"), "TRAINER.CLIP_LORA.PARAMS"),
    (("TRAINER.CLIP_LORA.ITERS", "0", "TRAINER.CLIP_LORA.ITERS_PER_SHOT", "0"), "budget"),
])
def test_bad_lora_settings_get_one_message(world, tmp_path, opts, fragment):
    assert fragment in _error(run_train(_args(world, "CLIPLoRA", tmp_path / "bad", *opts), check=False, timeout=900))


@pytest.mark.parametrize("iters, opts, fragment", [
    (12, ("TRAINER.TWO_STAGE.STAGE1_FRACTION", "1.0"), "STAGE1_FRACTION = 1.0"),
    (1, (), "leaves a stage without iterations"),
])
def test_bad_two_stage_budget_gets_one_message(world, tmp_path, iters, opts, fragment):
    args = _args(world, "TwoStage", tmp_path / "bad", *opts, iters=iters)
    assert fragment in _error(run_train(args, check=False, timeout=900))


def test_a_checkpoint_of_another_rank_is_refused_by_name(world, tmp_path):
    trained = tmp_path / "r2"
    run_train(_args(world, "CLIPLoRA", trained, iters=3), timeout=900)
    args = _args(world, "CLIPLoRA", tmp_path / "eval", "TRAINER.CLIP_LORA.RANK", "4",
                 flags=_eval_flags(trained))
    message = _error(run_train(args, check=False, timeout=900))
    assert "rank 2 (this run: 4)" in message
