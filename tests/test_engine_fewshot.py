"""Few-shot sampling equals Dassl's algorithm, written out here independently."""
import json
import random
import subprocess
import sys

from dassl.data.datasets import DatasetBase, Datum
from dassl.utils import set_random_seed
from tests.engine_helpers import REPO


def _items(tmp_path):
    path = tmp_path / "img.jpg"
    path.write_bytes(b"x")
    rng = random.Random(123)
    labels = [rng.randrange(5) for _ in range(60)]  # labels appear in a scrambled order
    return [Datum(impath=str(path), label=lab, classname=f"c{lab}") for lab in labels]


def reference_fewshot(items, k):
    """Per label in first-appearance order, random.sample(items_of_label, k) (all if fewer)."""
    order, groups = [], {}
    for item in items:
        if item.label not in groups:
            order.append(item.label)
            groups[item.label] = []
        groups[item.label].append(item)
    out = []
    for label in order:
        group = groups[label]
        out.extend(random.sample(group, k) if len(group) >= k else group)
    return out


def _index_of(items, subset):
    ids = {id(x): i for i, x in enumerate(items)}
    return [ids[id(x)] for x in subset]


def test_subset_equals_reference_algorithm(tmp_path):
    items = _items(tmp_path)
    for seed in (1, 2, 3):
        for k in (1, 4, 16):
            set_random_seed(seed)
            ours = DatasetBase().generate_fewshot_dataset(items, num_shots=k)
            set_random_seed(seed)
            ref = reference_fewshot(items, k)
            assert _index_of(items, ours) == _index_of(items, ref)


def test_two_sources_are_sampled_in_sequence_and_seeds_differ(tmp_path):
    items = _items(tmp_path)
    set_random_seed(1)
    train, val = DatasetBase().generate_fewshot_dataset(items, items, num_shots=4)
    set_random_seed(1)
    ref_train = reference_fewshot(items, 4)
    ref_val = reference_fewshot(items, 4)
    assert _index_of(items, train) == _index_of(items, ref_train)
    assert _index_of(items, val) == _index_of(items, ref_val)
    set_random_seed(2)
    other = DatasetBase().generate_fewshot_dataset(items, num_shots=4)
    assert _index_of(items, other) != _index_of(items, train)


def test_small_class_takes_all_or_repeats(tmp_path, capsys):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x")
    items = [Datum(str(path), 0, classname="rare")] * 2 + [Datum(str(path), 1, classname="common")] * 9
    set_random_seed(0)
    out = DatasetBase().generate_fewshot_dataset(items, num_shots=4)
    assert [x.label for x in out].count(0) == 2 and len(out) == 6
    assert 'class "rare" (label 0) has only 2 images' in capsys.readouterr().out
    rep = DatasetBase().generate_fewshot_dataset(items, num_shots=4, repeat=True)
    assert [x.label for x in rep].count(0) == 4
    assert DatasetBase().generate_fewshot_dataset(items, num_shots=-1) is items


def test_identical_across_processes(tmp_path):
    items_file = tmp_path / "img.jpg"
    items_file.write_bytes(b"x")
    code = (
        "import json,sys; from dassl.data.datasets import DatasetBase, Datum; from dassl.utils import set_random_seed;"
        f"items=[Datum(impath={str(items_file)!r}, label=(i*7)%5, classname=str(i)) for i in range(50)];"
        "set_random_seed(3); out=DatasetBase().generate_fewshot_dataset(items, num_shots=3);"
        "print(json.dumps([x.classname for x in out]))"
    )
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first == second and len(first) == 15


def test_datum_requires_existing_file(tmp_path):
    import pytest
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        Datum(impath=str(tmp_path / "nope.jpg"))
    with pytest.raises(TypeError):
        Datum(impath=3)
