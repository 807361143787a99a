"""Deep-prompt hooks (trainers/common/deep_prompts.py) and the two methods built on them, MaPLe
and PromptSRC: the hooks against a hand-run transformer, the ViT check, and real train.py runs
on the demo data with a tiny random-weight ViT CLIP (deterministic per seed, base -> new,
resumed after a kill exactly as uninterrupted)."""
import json
import os
import re
import signal

import clip
import pytest
import torch
from clip.model import CLIP

from datasets.demo_shapes_generate import TASKS, generate
from tests.engine_helpers import REPO, train_killed_at_log_line
from tests.engine_helpers import run_train as _run_train
from tests.tiny_clip import TINY_CONFIGS, build_tiny_clip, save_tiny_clip
from trainers.common.backbone import backbone_from_clip_model
from trainers.common.deep_prompts import (prompt_draws_during_build, prompted, put_tokens, text_layer_hook, towers)
from trainers.common.text_encoder import TextEncoder

CONFIGS = {"MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"}
pytestmark = pytest.mark.timeout(3600)  # the train.py tests run several processes each
MODEL_FOLDER = {"MaPLe": "MultiModalPromptLearner", "PromptSRC": "VLPromptLearner"}


def _manual_image_features(model, images, append, replace):
    """CLIP's ViT forward written out, with the tokens put in by hand."""
    visual = model.visual
    x = visual.conv1(images).flatten(2).permute(0, 2, 1)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = torch.cat([x, append.unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
    x = visual.ln_pre(x)
    for k, block in enumerate(visual.transformer.resblocks):
        if k in replace:
            x = torch.cat([x[:, :-len(replace[k])], replace[k].unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)
        x = block(x.permute(1, 0, 2)).permute(1, 0, 2)
    return visual.ln_post(x[:, 0]) @ visual.proj


def test_image_hooks_put_tokens_where_the_hand_run_does_and_leave_no_trace():
    torch.manual_seed(0)
    model = build_tiny_clip("vit").eval()
    images = torch.randn(3, 3, 32, 32)
    _, vision = towers(backbone_from_clip_model(model))
    append, deep = torch.randn(2, vision.width), {1: torch.randn(2, vision.width)}
    plain = model.encode_image(images)
    with torch.no_grad(), prompted(vision, append=append, replace=deep):
        hooked = model.encode_image(images)
    with torch.no_grad():
        expected = _manual_image_features(model, images, append, deep)
    torch.testing.assert_close(hooked, expected)
    assert not torch.allclose(hooked, plain)
    torch.testing.assert_close(model.encode_image(images), plain)  # hooks gone after the block


def test_text_hook_replaces_the_context_positions_before_each_deeper_block():
    torch.manual_seed(0)
    model = build_tiny_clip("vit").eval()
    tokens = clip.tokenize(["a photo of a red circle.", "a photo of a blue square."])
    embeddings = model.token_embedding(tokens)
    deep = {1: torch.randn(2, model.ln_final.weight.shape[0])}
    with torch.no_grad():
        backbone = backbone_from_clip_model(model)
        hooked = TextEncoder(backbone, truncate=False)(embeddings, tokens, text_layer_hook(deep))
        x = (embeddings + model.positional_embedding).permute(1, 0, 2)
        for k, block in enumerate(model.transformer.resblocks):
            if k in deep:
                x = put_tokens(x, deep[k], 1, batch_first=False)
            x = block(x)
        x = model.ln_final(x.permute(1, 0, 2))
        expected = x[torch.arange(2), tokens.argmax(-1)] @ model.text_projection
        truncated = TextEncoder(backbone)(embeddings, tokens, text_layer_hook(deep))
    torch.testing.assert_close(hooked, expected)
    torch.testing.assert_close(truncated, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(put_tokens(x.permute(1, 0, 2), deep[1], 1, False)[1:3, 0], deep[1])


def test_prompts_drawn_during_the_build_are_reproducible_and_shift_the_stream():
    def build(plan):
        torch.manual_seed(0)
        with prompt_draws_during_build(**plan) as drawn:
            model = CLIP(**TINY_CONFIGS["vit"])
        return drawn, model, torch.rand(1)

    plan = dict(vision_shallow=True, vision_depth=9, text_depth=9, n_vision=4, n_text=3)
    first, model, after = build(plan)
    again, model2, after2 = build(plan)
    assert first["vision_shallow"].shape == (4, 64) and set(first["vision"]) == {1} and set(first["text"]) == {1}
    assert first["text"][1].shape == (3, 64)
    assert all(torch.equal(a, b) for a, b in zip(first["vision"].values(), again["vision"].values()))
    assert torch.equal(after, after2)
    torch.manual_seed(0)
    plain = build_tiny_clip("vit", seed=0)  # same seed, no prompts: the prompts took draws in between
    assert not torch.equal(plain.visual.class_embedding, model.visual.class_embedding)


# --- train.py on the demo data with a tiny random-weight ViT CLIP --------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    data = str(root / "data")
    generate(data, 32, 8, 1, 6, task=TASKS["demo_shapes"])
    return {"root": root, "data": data, "clip": save_tiny_clip(str(root), arch="vit")}


def _args(world, trainer, out, *opts, seed=1, subsample="base", epochs=2, flags=()):
    return ["--root", world["data"], "--seed", str(seed), "--trainer", trainer, "--output-dir", str(out),
            "--config-file", os.path.join(REPO, "configs", "trainers", CONFIGS[trainer]),
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "demo_shapes.yaml"), *flags,
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", subsample, "INPUT.SIZE", "(32, 32)",
            "MODEL.BACKBONE.PATH", world["clip"], "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", str(epochs),
            "TRAIN.PRINT_FREQ", "1", *opts]


def run_train(args, check=True):
    return _run_train(args, check=check, timeout=1800)  # a busy shared machine: minutes per run


def _weights(out, trainer, epoch):
    path = os.path.join(str(out), MODEL_FOLDER[trainer], f"model.pth.tar-{epoch}")
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _accuracy(out):
    return json.load(open(os.path.join(str(out), "result.json")))["accuracy"]


@pytest.mark.parametrize("trainer", ["MaPLe", "PromptSRC"])
def test_same_seed_same_run_other_seed_other_run_and_base_model_tests_on_new(world, trainer, tmp_path):
    runs = {name: tmp_path / name for name in ("a", "b", "c")}
    run_train(_args(world, trainer, runs["a"]))
    run_train(_args(world, trainer, runs["b"]))
    run_train(_args(world, trainer, runs["c"], seed=2))
    a, b, c = (_weights(runs[n], trainer, 2) for n in "abc")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    assert _accuracy(runs["a"]) == _accuracy(runs["b"])
    new = tmp_path / "new"
    out = run_train(_args(world, trainer, new, subsample="new", flags=("--eval-only", "--model-dir", str(runs["a"]),
                                                                        "--load-epoch", "2"))).stdout
    assert "accuracy" in out and os.path.isfile(new / "result.json")


@pytest.mark.slow
def test_promptsrc_killed_after_an_epoch_resumes_with_its_aggregate_and_ends_as_uninterrupted(world, tmp_path):
    opts = ("TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1")  # every epoch weighs
    reference = tmp_path / "reference"
    run_train(_args(world, "PromptSRC", reference, *opts, epochs=4))
    killed = tmp_path / "killed"
    code = train_killed_at_log_line(_args(world, "PromptSRC", killed, *opts, "TRAIN.RESUME_EVERY_MINUTES", "0",
                                          epochs=4), re.escape("epoch [3/4] batch [1/"), timeout=1800)
    assert code == -signal.SIGKILL
    resumed = run_train(_args(world, "PromptSRC", killed, *opts, epochs=4)).stdout
    assert "resuming after epoch 2 of 4" in resumed
    ref, res = _weights(reference, "PromptSRC", 4), _weights(killed, "PromptSRC", 4)
    assert any(k.startswith("gpa.") for k in ref)
    assert ref.keys() == res.keys() and all(torch.equal(ref[k], res[k]) for k in ref)
    # the prompts are the aggregate (the Gaussian-weighted sum over the 4 epochs)
    assert torch.equal(ref["prompt_learner.ctx"], ref["gpa.ctx"])


@pytest.mark.parametrize("trainer", ["MaPLe", "PromptSRC"])
def test_a_resnet_backbone_is_refused_with_the_vit_backbones_named(world, trainer, tmp_path):
    rn = save_tiny_clip(str(tmp_path), arch="rn")
    # by name (refused before anything loads), and a weights file that holds a ResNet
    for opts in (("MODEL.BACKBONE.NAME", "RN50", "MODEL.BACKBONE.PATH", ""), ("MODEL.BACKBONE.PATH", rn)):
        args = _args(world, trainer, tmp_path / "out", *opts)
        proc = run_train(args, check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output
        assert "Traceback" not in output
        assert "MODEL.BACKBONE.NAME" in output and "ViT-B/16" in output and "tiny-vit-pretrained" in output
        assert "ResNet" in output
