"""The frozen-feature cache on its own: a real tiny CLIP, real image files, real transforms.

Encoder calls are counted by wrapping the real `encode_image` (nothing is mocked), so a
"miss" is an observed re-encoding and a "hit" is an observed absence of encoder calls.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data.data_manager import build_data_loader, read_image
from dassl.data.datasets import Datum
from dassl.data.transforms import build_transform
from tests.engine_helpers import REPO
from tests.tiny_clip import build_tiny_clip
from tests.machine_speed import scaled_timeout
from trainers.common import feature_cache as fc
from trainers.common.backbone import backbone_from_clip_model
from trainers.common.classifier import class_features, cosine_logits
from trainers.config import extend_cfg

N_IMAGES = 7


class CountingEncoder:
    """The real CLIP image encoder, counting the images it is given."""

    def __init__(self, model):
        self.model = model
        self.images = 0

    @torch.no_grad()
    def __call__(self, images):
        self.images += len(images)
        return self.model.encode_image(images)


def make_cfg(**input_overrides):
    cfg = extend_cfg(get_cfg_default())
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    for key, value in input_overrides.items():
        cfg.INPUT[key] = value
    return cfg


def write_image(path, seed, size=(40, 36)):
    pixels = np.random.RandomState(seed).randint(0, 256, size=(size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return [write_image(str(folder / f"img_{i}.png"), seed=i) for i in range(N_IMAGES)]


@pytest.fixture(scope="module")
def model():
    return build_tiny_clip("rn", seed=0).eval()


def feature_set(root, model, transform, views, backbone="tiny-rn"):
    return fc.FeatureSet(str(root), fc.encoder_fingerprint(model.visual, backbone, "cpu"), transform, views)


def shards(fset):
    return [p for p in fset._shards()]


def test_cached_test_features_equal_fresh_ones_and_predict_the_same(tmp_path, images, model):
    tfm = build_transform(make_cfg(), is_train=False)
    encoder = CountingEncoder(model)
    cached = feature_set(tmp_path, model, tfm, views=1).load(images, encoder, batch_size=3)
    assert cached.shape == (N_IMAGES, 1, 64) and encoder.images == N_IMAGES

    fresh = encoder(torch.stack([tfm(read_image(p)) for p in images]))
    torch.testing.assert_close(cached[:, 0], fresh, rtol=1e-5, atol=1e-5)
    classifier = class_features(backbone_from_clip_model(model), ["cat", "dog", "red car"], "a photo of a {}.")
    assert torch.equal(cosine_logits(cached[:, 0], classifier, model.logit_scale).argmax(1),
                       cosine_logits(fresh, classifier, model.logit_scale).argmax(1))

    # A second run (new FeatureSet object, same settings) reads the disk: no encoder call.
    encoder.images = 0
    again = feature_set(tmp_path, model, tfm, views=1).load(images, encoder, batch_size=3)
    assert encoder.images == 0 and torch.equal(again, cached)


def test_train_views_come_from_seeds_of_image_and_view(tmp_path, images, model):
    tfm = build_transform(make_cfg(), is_train=True)
    encoder = CountingEncoder(model)
    views = feature_set(tmp_path / "a", model, tfm, views=3).load(images, encoder, batch_size=4)
    assert views.shape == (N_IMAGES, 3, 64) and encoder.images == 3 * N_IMAGES

    for i in (0, N_IMAGES - 1):
        crops = []
        for v in range(3):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(fc.view_seed(fc.file_sha256(images[i]), v))
                crops.append(tfm(read_image(images[i])))
            torch.testing.assert_close(views[i, v], encoder(crops[-1][None])[0], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(crops[0], crops[1]) and not torch.equal(views[i, 0], views[i, 1])

    # Reproducible: an empty cache elsewhere, other batch size, other list order -> same views.
    again = feature_set(tmp_path / "b", model, tfm, views=3).load(images[::-1], encoder, batch_size=5)
    torch.testing.assert_close(again.flip(0), views, rtol=1e-5, atol=1e-5)


def test_runs_share_the_views_of_the_images_they_have_in_common(tmp_path, images, model, capsys):
    tfm = build_transform(make_cfg(), is_train=True)
    encoder = CountingEncoder(model)
    fset = feature_set(tmp_path, model, tfm, views=2)
    first = fset.load(images[:4], encoder)
    encoder.images = 0
    second = fset.load(images[2:6], encoder)  # 2 images seen before, 2 new ones
    assert encoder.images == 2 * 2
    torch.testing.assert_close(second[:2], first[2:4], rtol=0, atol=0)
    assert len(shards(fset)) == 2
    encoder.images = 0
    fset.load(images[:6], encoder)
    assert encoder.images == 0
    assert "all 6 features images found" in capsys.readouterr().out


def _other_weights_model():
    return build_tiny_clip("rn", seed=1).eval()


@pytest.mark.parametrize("change", ["backbone", "weights", "fp16", "crop scale", "interpolation",
                                    "pixel mean", "views"])
def test_changing_a_key_input_misses_the_cache(tmp_path, images, model, change):
    cfg = make_cfg()
    encoder = CountingEncoder(model)
    feature_set(tmp_path, model, build_transform(cfg), views=2).load(images, encoder)

    other_model, backbone, views = model, "tiny-rn", 2
    if change == "backbone":
        backbone = "tiny-rn-renamed"
    elif change == "weights":
        other_model = _other_weights_model()
    elif change == "fp16":  # same weights, other dtype (fp16 -> fp32 of the same file differs too)
        other_model = build_tiny_clip("rn", seed=0).eval().half()
    elif change == "crop scale":
        cfg = make_cfg(RRCROP_SCALE=(0.5, 1.0))
    elif change == "interpolation":
        cfg = make_cfg(INTERPOLATION="bilinear")
    elif change == "pixel mean":
        cfg = make_cfg(PIXEL_MEAN=[0.5, 0.5, 0.5])
    elif change == "views":
        views = 3
    fset = feature_set(tmp_path, other_model, build_transform(cfg), views=views, backbone=backbone)
    assert fset.collect([fc.file_sha256(p) for p in images]) == {}
    if change != "fp16":  # fp16 convolutions do not run on CPU; the key alone is checked there
        other_encoder = CountingEncoder(other_model)
        fset.load(images, other_encoder)
        assert other_encoder.images == views * N_IMAGES


def test_changing_the_input_size_misses_the_cache(tmp_path, images, model):
    # A 48 px encoder would be another model, so only the lookup is checked here.
    small = feature_set(tmp_path, model, build_transform(make_cfg(SIZE=(32, 32))), views=2)
    small.load(images, CountingEncoder(model))
    large = feature_set(tmp_path, model, build_transform(make_cfg(SIZE=(48, 48))), views=2)
    assert "size=(48, 48)" in large.description["transform"] and large.directory != small.directory
    assert large.collect([fc.file_sha256(p) for p in images]) == {}


def test_changed_image_content_is_encoded_again(tmp_path, model, monkeypatch):
    # BMP files keep their size when the pixels change; the old mtime is put back as well,
    # so only the content (and the ctime no program can set) tells the two files apart.
    monkeypatch.setattr(fc, "DIGEST_TRUST_AGE_S", 0.0)  # memoise digests at once (else only after 2 s)
    paths = [write_image(str(tmp_path / f"img_{i}.bmp"), seed=i) for i in range(3)]
    tfm = build_transform(make_cfg(), is_train=False)
    encoder = CountingEncoder(model)
    fset = feature_set(tmp_path / "cache", model, tfm, views=1)
    before = fset.load(paths, encoder)
    assert os.listdir(tmp_path / "cache" / fc.DIGEST_DIR)  # the digest memo was written

    st = os.stat(paths[1])
    write_image(paths[1], seed=99)
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(paths[1]).st_size == st.st_size and os.stat(paths[1]).st_mtime_ns == st.st_mtime_ns

    encoder.images = 0
    after = fset.load(paths, encoder)
    assert encoder.images == 1
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=0)
    assert not torch.allclose(after[1], before[1])


def _corrupt(path, how):
    data = bytearray(open(path, "rb").read())
    if how == "truncated":
        data = data[: len(data) - 10]
    elif how == "payload byte":
        data[-5] ^= 0xFF
    elif how == "header byte":
        data[8 + 20] ^= 0x01  # inside the safetensors JSON header
    elif how == "not a shard":
        data = bytearray(b"garbage")
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("how", ["truncated", "payload byte", "header byte", "not a shard"])
def test_damaged_shard_is_detected_and_rebuilt(tmp_path, images, model, how, capsys):
    tfm = build_transform(make_cfg(), is_train=True)
    encoder = CountingEncoder(model)
    fset = feature_set(tmp_path, model, tfm, views=2)
    original = fset.load(images, encoder)
    (shard,) = shards(fset)
    _corrupt(shard, how)

    encoder.images = 0
    rebuilt = fset.load(images, encoder)
    assert encoder.images == 2 * N_IMAGES
    assert f"{shard}" in capsys.readouterr().out  # the damaged file is named
    torch.testing.assert_close(rebuilt, original, rtol=1e-5, atol=1e-5)
    (new_shard,) = shards(fset)
    assert new_shard != shard
    fc.read_shard_features(new_shard, fc.read_shard_header(new_shard))  # intact


def test_half_written_temp_files_are_never_read_as_shards(tmp_path, images, model):
    tfm = build_transform(make_cfg(), is_train=False)
    fset = feature_set(tmp_path, model, tfm, views=1)
    os.makedirs(fset.directory)
    with open(os.path.join(fset.directory, f"shard-x{fc.SHARD_SUFFIX}.abc123.tmp"), "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"\x00" * 10)
    encoder = CountingEncoder(model)
    fset.load(images, encoder)
    assert encoder.images == N_IMAGES


_BUILDER = textwrap.dedent("""
    import os, sys, time, torch
    from dassl.data.transforms import build_transform
    from tests.test_feature_cache import CountingEncoder, make_cfg
    from tests.tiny_clip import build_tiny_clip
    from trainers.common import feature_cache as fc

    root, go_file, out_file, *paths = sys.argv[1:]
    model = build_tiny_clip("rn", seed=0).eval()
    fset = fc.FeatureSet(root, fc.encoder_fingerprint(model.visual, "tiny-rn", "cpu"),
                         build_transform(make_cfg(), is_train=True), 4)
    while not os.path.exists(go_file):
        time.sleep(0.01)
    encoder = CountingEncoder(model)
    features = fset.load(paths, encoder, batch_size=4)
    torch.save({"features": features, "encoded": encoder.images}, out_file)
""")


def test_two_processes_building_the_same_cache_both_finish_with_a_valid_cache(tmp_path, images):
    script = tmp_path / "builder.py"
    script.write_text(_BUILDER)
    go_file = str(tmp_path / "go")
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), go_file,
                               str(tmp_path / f"out{k}.pt"), *images],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k in range(2)]
    open(go_file, "w").close()  # both start loading at the same moment
    outputs = [p.communicate(timeout=scaled_timeout(120))[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    results = [torch.load(tmp_path / f"out{k}.pt") for k in range(2)]
    torch.testing.assert_close(results[0]["features"], results[1]["features"], rtol=0, atol=0)
    # One of them encoded everything, the other one waited and read its shard.
    assert sorted(r["encoded"] for r in results) == [0, 4 * N_IMAGES]

    model = build_tiny_clip("rn", seed=0).eval()
    fset = feature_set(tmp_path / "cache", model, build_transform(make_cfg(), is_train=True), views=4)
    (shard,) = shards(fset)
    encoder = CountingEncoder(model)
    torch.testing.assert_close(fset.load(images, encoder), results[0]["features"], rtol=0, atol=0)
    assert encoder.images == 0
    assert not [n for n in os.listdir(fset.directory) if n.endswith(".tmp")]


def test_loader_over_features_batches_like_the_reference_loader(images):
    cfg = make_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    items = [Datum(impath=p, label=i % 3, domain=0, classname=str(i % 3)) for i, p in enumerate(images)]
    for is_train, sampler in ((True, "RandomSampler"), (False, "SequentialSampler")):
        reference = build_data_loader(cfg, sampler_type=sampler, data_source=items, batch_size=3,
                                      tfm=build_transform(cfg, is_train=is_train), is_train=is_train)
        features = torch.arange(N_IMAGES * 2 * 4, dtype=torch.float32).reshape(N_IMAGES, 2, 4)
        loader = fc.loader_like(reference, features, items)
        assert len(loader) == len(reference) == (2 if is_train else 3)  # drop_last only in training
        loader.dataset.view = 1
        batches = list(loader)
        seen = torch.cat([b["index"] for b in batches])
        if is_train:
            assert len(set(seen.tolist())) == 6 and all(len(b["label"]) == 3 for b in batches)
        else:
            assert seen.tolist() == list(range(N_IMAGES))
        for batch in batches:
            torch.testing.assert_close(batch["img"], features[batch["index"], 1])
            assert batch["label"].tolist() == [items[i].label for i in batch["index"]]
            assert batch["impath"] == [items[i].impath for i in batch["index"]]


def test_an_unusable_cache_root_is_an_error_naming_the_setting(tmp_path, images, model):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    fset = feature_set(blocker / "cache", model, build_transform(make_cfg(), is_train=False), views=1)
    with pytest.raises(OSError, match="TRAIN.FEATURE_CACHE.ROOT"):
        fset.load(images, CountingEncoder(model))
