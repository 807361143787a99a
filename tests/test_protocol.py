"""Selection protocols end to end: the test split sealed until the final evaluation, protocols
resolved, refused and recorded, subset files written, read and checked (tiny real CLIP, train.py
subprocesses on a fixture dataset)."""
import json
import os
import textwrap

import pytest

from datasets.subset_files import read_subset
from tests.clip_run_helpers import result, run, trainer_args, write_fixture_and_clip
from tests.dataset_fixtures import fixture_counts
from tests.engine_helpers import run_train

SHOTS = 2
TIP = ["DATASET.NUM_SHOTS", str(SHOTS), "TRAINER.TIP_ADAPTER.SEARCH_STEP", "(4, 3)",
       "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "1", "TRAINER.TIP_ADAPTER.PREC", "fp32"]
PEEKING_PLUGIN = '''
from dassl.engine import TRAINER_REGISTRY
from trainers.clip_adapter import CLIP_Adapter


@TRAINER_REGISTRY.register()
class PeekingAdapter(CLIP_Adapter):
    """CLIP-Adapter that tries to look at the test split in its first epoch."""

    def before_epoch(self):
        super().before_epoch()
        if PEEK == "loader":
            next(iter(self.test_loader))
        elif PEEK == "paths":
            [d.impath for d in self.dm.dataset.test]
        elif PEEK == "dm":
            next(iter(self.dm.test_loader))
'''


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    data_root, clip_path = write_fixture_and_clip(root, "OxfordPets", arch="rn", per_class=8)
    return dict(root=root, data_root=data_root, clip_path=clip_path)


def args(pets, trainer, config, out, *opts, flags=()):
    return trainer_args(trainer, config, pets["data_root"], pets["clip_path"], pets["root"] / out,
                        "OxfordPets", *opts, flags=flags)


def adapter_args(pets, out, *opts, flags=(), trainer="CLIP_Adapter"):
    return args(pets, trainer, "CLIP_Adapter/rn50.yaml", out, "DATASET.NUM_SHOTS", str(SHOTS),
                "OPTIM.MAX_EPOCH", "1", *opts, flags=flags)


@pytest.mark.parametrize("peek", ["loader", "paths", "dm"])
def test_a_method_that_reads_test_data_during_training_fails(pets, tmp_path, peek):
    plugin = tmp_path / "peeking.py"
    plugin.write_text(f"PEEK = {peek!r}\n" + textwrap.dedent(PEEKING_PLUGIN))
    proc = run_train(adapter_args(pets, f"peek-{peek}", flags=["--plugin", str(plugin)], trainer="PeekingAdapter"),
                     check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "PeekingAdapter tried to read the test split before the final evaluation" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(pets["root"] / f"peek-{peek}" / "result.json")


def test_oracle_opens_the_test_split_and_is_flagged(pets, tmp_path):
    plugin = tmp_path / "peeking.py"
    plugin.write_text("PEEK = 'loader'\n" + textwrap.dedent(PEEKING_PLUGIN))
    stdout = run(adapter_args(pets, "peek-oracle", "PROTOCOL", "oracle", flags=["--plugin", str(plugin)],
                              trainer="PeekingAdapter"))
    assert "!! PROTOCOL oracle" in stdout
    assert result(pets["root"] / "peek-oracle")["protocol"] == "oracle"


def test_default_protocols_are_recorded_with_subset_and_cost(pets):
    run(adapter_args(pets, "adapter"))
    record = result(pets["root"] / "adapter")
    assert record["protocol"] == "nov"
    assert set(record["cost"]) == {"wall_s", "host_peak_mb", "device_peak_mb", "device"}
    assert record["cost"]["wall_s"] > 0 and record["cost"]["host_peak_mb"] > 0
    train, val, header = read_subset(str(pets["root"] / "adapter" / "subset.jsonl"), "OxfordPets",
                                     _classes(pets, "adapter"))
    assert header["sha256"] == record["subset_hash"] and len(train) == SHOTS * 6
    assert val == []  # nov: no validation data at all

    run(args(pets, "TipAdapter", "TipAdapter/rn50.yaml", "tip", *TIP))
    tip = result(pets["root"] / "tip")
    assert tip["protocol"] == "fsval" and tip["search"]["split"] == "few-shot val"
    assert tip["subset_hash"] != record["subset_hash"]  # same train images, but tip also has a few-shot val
    tip_train, _, _ = read_subset(str(pets["root"] / "tip" / "subset.jsonl"), "OxfordPets", _classes(pets, "tip"))
    assert tip_train == train  # every protocol trains on the same images


def _items(pets, out):
    with open(pets["root"] / out / "subset.jsonl") as f:
        return [json.loads(line) for line in f.readlines()[1:]]


def _classes(pets, out):
    labels = {r["class"]: r["label"] for r in _items(pets, out)}
    return sorted(labels, key=labels.get)


def test_tip_adapter_protocols_select_where_they_say(pets):
    for protocol in ("nov", "fullval", "oracle"):
        run(args(pets, "TipAdapter", "TipAdapter/rn50.yaml", f"tip-{protocol}", *TIP, "PROTOCOL", protocol))
    nov, full, oracle = (result(pets["root"] / f"tip-{p}") for p in ("nov", "fullval", "oracle"))
    assert nov["search"] is None and nov["alpha"] == nov["init_alpha"]
    assert full["search"]["split"] == "full val"
    assert full["search"]["images"] == fixture_counts("OxfordPets", per_class=8)["val"]
    assert oracle["protocol"] == "oracle" and oracle["search"]["split"] == "full val"


def test_tip_adapter_f_oracle_picks_its_epoch_on_test(pets):
    run(args(pets, "TipAdapterF", "TipAdapterF/rn50.yaml", "tipf-oracle", *TIP, "OPTIM.MAX_EPOCH", "2",
             "PROTOCOL", "oracle"))
    assert result(pets["root"] / "tipf-oracle")["selection"] == "best epoch on the test split"
    run(args(pets, "TipAdapterF", "TipAdapterF/rn50.yaml", "tipf-nov", *TIP, "OPTIM.MAX_EPOCH", "2",
             "PROTOCOL", "nov"))
    assert result(pets["root"] / "tipf-nov")["selection"] == "last epoch"


@pytest.mark.parametrize("opts, message", [
    (["PROTOCOL", "testval"], "PROTOCOL = 'testval' is not a protocol"),
    (["PROTOCOL", "oracle"], "CLIP-Adapter (CLIP_Adapter) supports nov"),
    (["PROTOCOL", "nov", "TEST.FINAL_MODEL", "best_val"], "PROTOCOL nov forbids selection"),
])
def test_protocol_mistakes_get_one_message_and_nothing_runs(pets, opts, message):
    out = f"bad-{opts[1]}-{len(opts)}"
    proc = run_train(adapter_args(pets, out, *opts), check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(pets["root"] / out / "result.json")


def test_a_subset_file_reproduces_the_subset_and_bad_files_are_refused(pets, tmp_path):
    run(adapter_args(pets, "from-file-src"))
    source = pets["root"] / "from-file-src" / "subset.jsonl"
    run(adapter_args(pets, "from-file", "DATASET.SUBSET_FILE", str(source), "SEED", "5"))
    assert result(pets["root"] / "from-file")["subset_hash"] == result(pets["root"] / "from-file-src")["subset_hash"]

    lines = source.read_text().splitlines()
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    other = tmp_path / "other.jsonl"
    header = json.loads(lines[0])
    other.write_text("\n".join([json.dumps({**header, "dataset": "DescribableTextures"}), *lines[1:]]) + "\n")
    for path, message in ((edited, "does not match the hash"), (other, "is a subset of DescribableTextures"),
                          (tmp_path / "none.jsonl", "does not exist")):
        proc = run_train(adapter_args(pets, f"bad-file-{path.stem}", "DATASET.SUBSET_FILE", str(path)),
                         check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
        assert not os.path.exists(pets["root"] / f"bad-file-{path.stem}" / "result.json")


def test_2sfs_split_files_round_trip_to_the_same_subset(pets, tmp_path):
    """Our subset exported in 2SFS's format (paths of another machine) and read back as
    DATASET.SUBSET_FILE selects the same images; a file naming an unknown image is refused."""
    import subprocess
    import sys

    from tests.engine_helpers import REPO
    run(adapter_args(pets, "2sfs-src"))
    source = pets["root"] / "2sfs-src" / "subset.jsonl"
    out = tmp_path / "split_fewshot"
    cli = [sys.executable, "-m", "datasets.to_2sfs", str(source), "/elsewhere/oxford_pets", str(out)]
    converted = subprocess.run(cli, cwd=REPO, check=True, capture_output=True, text=True)
    assert converted.stderr == "" and "wrote" in converted.stdout
    train_file = out / f"shot_{SHOTS}-seed_1_train.jsonl"
    first = json.loads(train_file.read_text().splitlines()[0])
    assert set(first) == {"_impath", "_label", "_domain", "_classname"}
    assert first["_impath"].startswith("/elsewhere/oxford_pets/")
    again = subprocess.run(cli, cwd=REPO, capture_output=True, text=True)  # never overwrites
    assert again.returncode != 0 and "exists" in again.stderr

    run(adapter_args(pets, "2sfs-read", "DATASET.SUBSET_FILE", str(train_file)))
    assert result(pets["root"] / "2sfs-read")["subset_hash"] == result(pets["root"] / "2sfs-src")["subset_hash"]

    lines = train_file.read_text().splitlines()
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / train_file.name).write_text("\n".join([json.dumps({**first, "_impath": "/x/not_here.jpg"}),
                                                      *lines[1:]]) + "\n")
    proc = run_train(adapter_args(pets, "2sfs-bad", "DATASET.SUBSET_FILE", str(bad_dir / train_file.name)),
                     check=False)
    assert proc.returncode == 2 and "/x/not_here.jpg" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(pets["root"] / "2sfs-bad" / "result.json")
