"""Benchmark datasets on miniature copies of their real layouts: names, labels, counts,
split-file handling, few-shot sampling (against the reference algorithm) and errors."""
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from collections import OrderedDict

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import build_dataset
from dassl.utils import set_random_seed
from datasets.split_files import DatasetError, DatasetNotFound
from tests.dataset_fixtures import (DATASET_NAMES, dataset_cfg, expected_classnames, fixture_counts,
                                    split_file_name, write_fixture)
from tests.machine_speed import scaled_timeout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(root, name, num_shots=-1, seed=1, subsample="all"):
    cfg = dataset_cfg(root, name, num_shots=num_shots, seed=seed, subsample=subsample)
    if seed >= 0:
        set_random_seed(seed)
    return build_dataset(cfg)


def rel(ds, items):
    return [os.path.relpath(d.impath, ds.dataset_dir) for d in items]


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_every_dataset_reads_its_layout(tmp_path, name):
    write_fixture(tmp_path, name)
    ds = load(tmp_path, name)
    assert ds.classnames == expected_classnames(name)
    assert ds.num_classes == len(expected_classnames(name))
    counts = fixture_counts(name)
    assert len(ds.train_x) == counts["train"]
    assert len(ds.test) == counts["test"]
    if name == "ImageNet":
        # No val split: the reference code validates on test, which only PROTOCOL oracle allows;
        # a full-data run under the default protocol has nothing to select on.
        assert ds.val is None and ds.val_source is None
        cfg = dataset_cfg(tmp_path, name)
        cfg.PROTOCOL = "oracle"
        oracle = build_dataset(cfg)
        assert rel(oracle, oracle.val) == rel(oracle, oracle.test) and len(oracle.val) == counts["val"]
    else:
        assert len(ds.val or []) == counts["val"]
    for split in (ds.train_x, ds.val or [], ds.test):
        for d in split:
            assert os.path.isfile(d.impath)
            assert d.classname == ds.classnames[d.label]
            assert os.path.abspath(d.impath).startswith(os.path.abspath(ds.dataset_dir) + os.sep)


def test_awkward_class_names_are_cleaned_for_prompts(tmp_path):
    """Spot checks of the reference class-name renames, as a template would print them."""
    names = {}
    for name in ("Caltech101", "SUN397", "UCF101", "StanfordCars", "EuroSAT", "OxfordPets", "FGVCAircraft"):
        write_fixture(tmp_path, name)
        names[name] = load(tmp_path, name).classnames
    assert names["Caltech101"][:5] == ["face", "leopard", "motorbike", "accordion", "airplane"]
    assert "BACKGROUND_Google" not in names["Caltech101"] and "Faces_easy" not in names["Caltech101"]
    assert names["SUN397"][3] == "shop bakery"
    assert names["SUN397"][2] == "outdoor apartment_building"
    prompt = "a photo of a person doing {}.".format(names["UCF101"][0].replace("_", " "))
    assert prompt == "a photo of a person doing Apply Eye Makeup."
    assert names["UCF101"][-1] == "Yo_Yo"
    assert names["StanfordCars"][0] == "2000 AM General Hummer SUV"
    assert "a centered satellite photo of Sea or Lake." == "a centered satellite photo of {}.".format(names["EuroSAT"][-1])
    assert names["OxfordPets"][0] == "abyssinian" and names["OxfordPets"][5] == "bengal"
    assert "F/A-18" in names["FGVCAircraft"] and "Falcon 2000" in names["FGVCAircraft"]


def test_flowers_labels_follow_ids_not_split_order(tmp_path):
    """The fixture's split lists classes in reverse order, as the real file is not sorted."""
    d = write_fixture(tmp_path, "OxfordFlowers")
    with open(os.path.join(d, "split_zhou_OxfordFlowers.json")) as f:
        first_label = json.load(f)["train"][0][1]
    assert first_label == 3
    ds = load(tmp_path, "OxfordFlowers")
    assert ds.classnames[0] == "pink primrose"
    assert ds.train_x[0].label == 3 and ds.train_x[0].classname == "sweet pea"


# ---------------------------------------------------------------- missing split files

BUILDABLE = ["Caltech101", "DescribableTextures", "EuroSAT", "Food101", "OxfordPets", "SUN397", "UCF101"]


@pytest.mark.parametrize("name", BUILDABLE)
def test_missing_split_is_built_loudly_saved_and_reused(tmp_path, capsys, name):
    d = write_fixture(tmp_path, name, with_split=False)
    split_path = os.path.join(d, split_file_name(name))
    ds = load(tmp_path, name)
    out = capsys.readouterr().out
    assert "WARNING" in out and split_path in out and "NOT comparable" in out and "DATASETS.md" in out
    assert os.path.isfile(split_path)
    assert ds.classnames == expected_classnames(name)
    n = len(ds.classnames)
    assert len(ds.train_x) + len(ds.val) + len(ds.test) == n * 6
    assert {d.label for d in ds.val} == set(range(n)) and {d.label for d in ds.test} == set(range(n))

    with open(split_path) as f:
        saved = f.read()
    again = load(tmp_path, name)
    assert "WARNING" not in capsys.readouterr().out
    assert rel(again, again.train_x) == rel(ds, ds.train_x)
    with open(split_path) as f:
        assert f.read() == saved


def test_new_split_is_reproducible(tmp_path):
    """A split built without a file depends only on the files (fixed seed), not on --seed."""
    splits = []
    for k, seed in enumerate((1, 7)):
        root = tmp_path / str(k)
        d = write_fixture(root, "DescribableTextures", with_split=False)
        load(root, "DescribableTextures", seed=seed)
        with open(os.path.join(d, "split_zhou_DescribableTextures.json")) as f:
            splits.append(json.load(f))
    assert splits[0] == splits[1]


@pytest.mark.parametrize("name,needs", [("OxfordFlowers", "imagelabels.mat"), ("StanfordCars", "cars_meta.mat")])
def test_split_from_mat_files_says_what_is_missing(tmp_path, name, needs):
    d = write_fixture(tmp_path, name, with_split=False)
    with pytest.raises(DatasetError, match=needs) as e:
        load(tmp_path, name)
    assert split_file_name(name) in str(e.value) or "split file" in str(e.value)
    assert not os.path.exists(os.path.join(d, split_file_name(name)))


def test_split_from_mat_without_scipy_says_install_or_download(tmp_path):
    if importlib.util.find_spec("scipy") is not None:
        pytest.skip("scipy is installed here: the missing-scipy message cannot occur")
    d = write_fixture(tmp_path, "OxfordFlowers", with_split=False)
    open(os.path.join(d, "imagelabels.mat"), "wb").close()
    with pytest.raises(DatasetError, match="pip install scipy"):
        load(tmp_path, "OxfordFlowers")


# ---------------------------------------------------------------- few-shot sampling

def reference_subset(split_path, image_prefix, num_shots, seed):
    """Dassl's algorithm, written out: per label in first-appearance order, random.sample."""
    set_random_seed(seed)
    with open(split_path) as f:
        split = json.load(f)

    def sample(items, k):
        groups = OrderedDict()
        for item in items:
            groups.setdefault(item[1], []).append(item)
        out = []
        for group in groups.values():
            out.extend(random.sample(group, k) if len(group) >= k else group)
        return [os.path.join(image_prefix, item[0]) for item in out]

    return sample(split["train"], num_shots), sample(split["val"], min(num_shots, 4))


def shuffled_split_fixture(root, per_class=30):
    """Pets with the split's train/val order interleaved, so first-appearance order is not label order."""
    d = write_fixture(root, "OxfordPets", n_classes=3, per_class=per_class)
    path = os.path.join(d, "split_zhou_OxfordPets.json")
    with open(path) as f:
        split = json.load(f)
    rng = random.Random(123)
    for key in ("train", "val"):
        rng.shuffle(split[key])
    with open(path, "w") as f:
        json.dump(split, f)
    return d, path


@pytest.mark.parametrize("shots", [1, 2, 8])
def test_fewshot_subset_equals_reference_algorithm(tmp_path, shots):
    d, path = shuffled_split_fixture(tmp_path)
    train_ref, val_ref = reference_subset(path, "images", shots, seed=2)
    ds = load(tmp_path, "OxfordPets", num_shots=shots, seed=2)
    assert rel(ds, ds.train_x) == train_ref
    assert rel(ds, ds.val) == val_ref
    assert len(ds.train_x) == 3 * shots
    assert len(ds.val) == 3 * min(shots, 4)  # val pool holds 6 per class
    assert len(ds.test) == 3 * 9  # test is never subsampled


def test_fewshot_same_across_processes_and_cache_reuse_different_across_seeds(tmp_path, capsys):
    d, path = shuffled_split_fixture(tmp_path)
    script = ("import json, sys\nimport datasets\nfrom dassl.data.datasets import build_dataset\n"
              "from dassl.utils import set_random_seed\nfrom tests.dataset_fixtures import dataset_cfg\n"
              # as train.py and `load`: every import (some draw from `random`) before the seed
              "cfg = dataset_cfg(sys.argv[1], 'OxfordPets', num_shots=4, seed=1)\n"
              "set_random_seed(1)\n"
              "ds = build_dataset(cfg)\n"
              "print('RESULT' + json.dumps([[x.impath for x in ds.train_x], [x.impath for x in ds.val]]))\n")

    p = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=scaled_timeout(120))
    assert p.returncode == 0, p.stderr
    assert "Saving preprocessed few-shot data" in p.stdout  # sampled there, then cached
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT")][0]
    first = json.loads(line[len("RESULT"):])

    capsys.readouterr()
    cached = load(tmp_path, "OxfordPets", num_shots=4, seed=1)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert [[x.impath for x in cached.train_x], [x.impath for x in cached.val]] == first
    os.remove(os.path.join(d, "split_fewshot", "shot_4-seed_1.json"))
    fresh = load(tmp_path, "OxfordPets", num_shots=4, seed=1)  # sampled anew in this process
    assert "Saving preprocessed few-shot data" in capsys.readouterr().out
    assert [[x.impath for x in fresh.train_x], [x.impath for x in fresh.val]] == first
    other = load(tmp_path, "OxfordPets", num_shots=4, seed=2)
    assert [x.impath for x in other.train_x] != first[0]
    train_ref, val_ref = reference_subset(path, "images", 4, seed=1)
    assert [os.path.relpath(p, d) for p in first[0]] == train_ref
    assert [os.path.relpath(p, d) for p in first[1]] == val_ref


def test_fewshot_cache_is_portable_json_with_relative_paths(tmp_path, capsys):
    write_fixture(tmp_path / "a", "EuroSAT")
    ds = load(tmp_path / "a", "EuroSAT", num_shots=2, seed=3)
    cache = os.path.join(ds.dataset_dir, "split_fewshot", "shot_2-seed_3.json")
    with open(cache) as f:
        data = json.load(f)
    assert all(not os.path.isabs(p) and p.startswith("2750/") for p, _, _ in data["train"] + data["val"])
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))  # the data folder moves
    capsys.readouterr()
    moved = load(tmp_path / "b", "EuroSAT", num_shots=2, seed=3)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert rel(moved, moved.train_x) == rel(ds, ds.train_x)
    assert all(os.path.isfile(x.impath) for x in moved.train_x)


def test_fewshot_cache_from_another_split_is_rebuilt(tmp_path, capsys):
    d, path = shuffled_split_fixture(tmp_path)
    load(tmp_path, "OxfordPets", num_shots=2, seed=1)
    with open(path) as f:
        split = json.load(f)
    split["train"] = split["train"][5:]  # a different split file
    with open(path, "w") as f:
        json.dump(split, f)
    capsys.readouterr()
    ds = load(tmp_path, "OxfordPets", num_shots=2, seed=1)
    assert "different split file or image list" in capsys.readouterr().out
    assert rel(ds, ds.train_x) == reference_subset(path, "images", 2, seed=1)[0]


def test_unreadable_cache_is_rebuilt_and_pickles_are_ignored(tmp_path, capsys):
    d = write_fixture(tmp_path, "DescribableTextures")
    fewshot = os.path.join(d, "split_fewshot")
    os.makedirs(fewshot)
    with open(os.path.join(fewshot, "shot_2-seed_1.json"), "w") as f:
        f.write("{ truncated")
    with open(os.path.join(fewshot, "shot_2-seed_1.pkl"), "wb") as f:
        f.write(b"not a pickle, and never unpickled")
    ds = load(tmp_path, "DescribableTextures", num_shots=2, seed=1)
    out = capsys.readouterr().out
    assert "unreadable" in out and "ignoring Dassl's pickled cache" in out
    assert len(ds.train_x) == 2 * 4
    with open(os.path.join(fewshot, "shot_2-seed_1.json")) as f:
        assert json.load(f)["num_shots"] == 2


def test_unseeded_run_writes_no_cache(tmp_path, capsys):
    d = write_fixture(tmp_path, "DescribableTextures")
    load(tmp_path, "DescribableTextures", num_shots=2, seed=-1)
    assert "not cached" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(d, "split_fewshot"))


def test_class_with_fewer_images_than_shots_takes_all_and_says_which(tmp_path, capsys):
    d, path = shuffled_split_fixture(tmp_path)
    with open(path) as f:
        split = json.load(f)
    keep_label1 = [x for x in split["train"] if x[1] == 1][:3]
    split["train"] = [x for x in split["train"] if x[1] != 1] + keep_label1
    with open(path, "w") as f:
        json.dump(split, f)
    ds = load(tmp_path, "OxfordPets", num_shots=8, seed=1)
    out = capsys.readouterr().out
    assert '"american_bulldog"' in out and "only 3 images" in out
    assert sorted(rel(ds, [x for x in ds.train_x if x.label == 1])) == sorted("images/" + x[0] for x in keep_label1)
    assert sum(x.label == 0 for x in ds.train_x) == 8


# ---------------------------------------------------------------- base / new classes

def test_subsample_base_and_new_classes(tmp_path):
    write_fixture(tmp_path, "Caltech101")  # 5 classes -> 3 base, 2 new
    names = expected_classnames("Caltech101")
    base = load(tmp_path, "Caltech101", num_shots=2, subsample="base")
    new = load(tmp_path, "Caltech101", num_shots=2, subsample="new")
    assert base.classnames == names[:3] and new.classnames == names[3:]
    for ds, n in ((base, 3), (new, 2)):
        for split in (ds.train_x, ds.val, ds.test):
            assert {d.label for d in split} == set(range(n))
            assert all(d.classname == ds.classnames[d.label] for d in split)
    full = load(tmp_path, "Caltech101", num_shots=2)
    assert rel(base, base.train_x) == rel(full, [d for d in full.train_x if d.label < 3])


def test_bad_subsample_value_names_the_key(tmp_path):
    write_fixture(tmp_path, "DescribableTextures")
    with pytest.raises(DatasetError, match="SUBSAMPLE_CLASSES.*'half'"):
        load(tmp_path, "DescribableTextures", subsample="half")


# ---------------------------------------------------------------- bad input

def test_missing_root_and_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetNotFound, match="DATASET.ROOT is empty.*--root"):
        load("", "EuroSAT")
    with pytest.raises(DatasetNotFound, match=f"{tmp_path / 'nope'}.*does not exist.*--root"):
        load(tmp_path / "nope", "EuroSAT")
    write_fixture(tmp_path, "DescribableTextures")
    with pytest.raises(DatasetNotFound) as e:
        load(tmp_path, "EuroSAT")
    msg = str(e.value)
    assert str(tmp_path / "eurosat") in msg and "DATASETS.md" in msg and "dtd" in msg


def test_split_entry_with_missing_image_is_reported_and_nothing_written(tmp_path):
    d = write_fixture(tmp_path, "Food101")
    gone = ["apple_pie/100000.jpg", "baklava/100037.jpg"]
    for g in gone:
        os.remove(os.path.join(d, "images", g))
    split_path = os.path.join(d, "split_zhou_Food101.json")
    before = open(split_path).read()
    with pytest.raises(DatasetError) as e:
        load(tmp_path, "Food101")
    msg = str(e.value)
    assert "2 of" in msg and "split_zhou_Food101.json" in msg
    assert all(os.path.join(d, "images", g) in msg for g in gone)
    assert open(split_path).read() == before
    assert sorted(os.listdir(d)) == ["images", "split_zhou_Food101.json"]


def test_malformed_split_file_names_the_file(tmp_path):
    d = write_fixture(tmp_path, "EuroSAT")
    path = os.path.join(d, "split_zhou_EuroSAT.json")
    with open(path, "w") as f:
        json.dump({"train": [["a.jpg", 0]], "val": [], "test": []}, f)
    with pytest.raises(DatasetError, match=r"split_zhou_EuroSAT.json.*\"train\" entry 0"):
        load(tmp_path, "EuroSAT")
    with open(path, "w") as f:
        f.write("not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load(tmp_path, "EuroSAT")


def test_fgvc_unknown_variant_and_missing_list(tmp_path):
    d = write_fixture(tmp_path, "FGVCAircraft")
    with open(os.path.join(d, "images_variant_test.txt"), "a") as f:
        f.write("1234567 Boeing 999\n")
    with pytest.raises(DatasetError, match="Boeing 999.*variants.txt"):
        load(tmp_path, "FGVCAircraft")
    os.remove(os.path.join(d, "images_variant_test.txt"))
    with pytest.raises(DatasetError, match="images_variant_test.txt"):
        load(tmp_path, "FGVCAircraft")
