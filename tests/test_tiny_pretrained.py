"""The tiny CLIP pretrained here: reproducible, cached once, loadable as CLIP, trained on
images disjoint from the demo benchmarks'."""
import os
import random
import subprocess
import sys

import numpy as np
import torch
from clip.model import build_model

from datasets.demo_captions import SCENE_SEED_BASE, image_caption_pair, scene_rng
from datasets.demo_shapes_generate import TASKS, _image_rng, draw_image
from tests.engine_helpers import REPO
from tests.machine_speed import scaled_timeout
from trainers.common import tiny_pretrained
from trainers.common.clip_loader import TINY_VIT_PRETRAINED_ARCHITECTURE, architecture_of, read_state_dict

SMALL = tiny_pretrained.Settings(steps=3, batch_size=8, pairs=24, warmup_steps=1)


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    first, info = tiny_pretrained.pretrain(SMALL, log=lambda _: None)
    again, _ = tiny_pretrained.pretrain(SMALL, log=lambda _: None)
    other, _ = tiny_pretrained.pretrain(tiny_pretrained.Settings(**{**SMALL.__dict__, "seed": 1}), log=lambda _: None)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["text_projection"], other["text_projection"])
    assert info["key"] == SMALL.key() != tiny_pretrained.Settings().key()


def test_parallel_builds_train_once_and_the_file_loads_as_clip(tmp_path):
    env = dict(os.environ, FEWSHOT_TINY_CLIP_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    code = ("import torch; from trainers.common import tiny_pretrained as t; torch.set_num_threads(1); "
            f"p = t.ensure_weights(t.{SMALL!r}); assert torch.get_num_threads() == 1; print('PATH', p)")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=scaled_timeout(300))[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum(out.count("tiny CLIP: pretraining") for out in outputs) == 1  # the other waited, then reused
    paths = {line.split(" ", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("PATH ")}
    assert paths == {str(tmp_path / f"tiny-clip-{SMALL.key()}.pt")}
    assert sorted(os.listdir(tmp_path)) == sorted([f"tiny-clip-{SMALL.key()}.{e}" for e in ("json", "pt", "pt.lock")])
    model = build_model(read_state_dict(paths.pop()))  # the project's loading path for official files
    assert model.visual.input_resolution == tiny_pretrained.ARCHITECTURE["image_resolution"]
    assert "train_seconds" in tiny_pretrained.read_info(str(tmp_path / f"tiny-clip-{SMALL.key()}.pt"))


def test_pretraining_images_are_not_demo_images():
    side = tiny_pretrained.ARCHITECTURE["image_resolution"]
    demo = {draw_image(drawing, side, _image_rng(seed + task.seed_offset, label, index)).tobytes()
            for task in TASKS.values() for label, drawing in enumerate(task.drawn_as)
            for index in range(30) for seed in (0,)}
    pretraining = {image_caption_pair(seed, index, side)[0].tobytes() for seed in (0, 1) for index in range(300)}
    assert len(demo) == 6 * 2 * 30 and len(pretraining) == 600
    assert not demo & pretraining
    # Different streams, not just different luck: every pretraining RNG seed lies above every demo seed.
    assert scene_rng(0, 0).random() == random.Random(SCENE_SEED_BASE).random()
    assert SCENE_SEED_BASE > 10**6 * 1_000_003


def test_captions_cover_the_demo_class_words():
    words = set()
    for index in range(400):
        words.update(image_caption_pair(0, index, 8, noise=0.0)[1].rstrip(".").replace("s ", " ").split())
    needed = {w for c in TASKS["demo_shapes"].classes for w in c.split()}
    assert needed <= words, needed - words
    assert not {"forest", "river", "crop"} & words  # DemoLandUse's names stay unknown to the tiny CLIP
    assert np.asarray(image_caption_pair(0, 0, 8)[0]).shape == (8, 8, 3)


SMALL_VIT = tiny_pretrained.ViTSettings(steps=3, batch_size=8, pairs=24, warmup_steps=1, text_start=SMALL)


def test_tiny_vit_is_reproducible_starts_from_the_resnet_text_side_and_loads_as_a_vit_clip(tmp_path, monkeypatch):
    monkeypatch.setenv(tiny_pretrained.DIR_ENV, str(tmp_path))
    first, info = tiny_pretrained.pretrain(SMALL_VIT, log=lambda _: None)
    again, _ = tiny_pretrained.pretrain(SMALL_VIT, log=lambda _: None)
    assert all(torch.equal(first[k], again[k]) for k in first)
    # the text side it starts from was built (once) in the same cache, under the ResNet's own name
    assert os.path.isfile(tmp_path / f"tiny-clip-{SMALL.key()}.pt")
    resnet = read_state_dict(str(tmp_path / f"tiny-clip-{SMALL.key()}.pt"))
    assert not torch.equal(first["ln_final.weight"], resnet["ln_final.weight"])  # then trained with the ViT
    assert info["name"] == tiny_pretrained.VIT_NAME and info["threads"] == 1
    other_text = tiny_pretrained.Settings(**{**SMALL.__dict__, "seed": 1})
    assert SMALL_VIT.key() != tiny_pretrained.ViTSettings(**{**SMALL_VIT.__dict__, "text_start": other_text}).key()
    model = build_model(first)
    assert architecture_of(first) == TINY_VIT_PRETRAINED_ARCHITECTURE
    assert len(model.visual.transformer.resblocks) == tiny_pretrained.VIT_ARCHITECTURE["vision_layers"]
    assert tiny_pretrained.SETTINGS[tiny_pretrained.VIT_NAME].architecture["image_resolution"] == 32
