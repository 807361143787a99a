"""DATASET.FEWSHOT_SEED: a run trains on another seed's few-shot subset (the parity check's
reruns of a subset with other training randomness), through train.py as a subprocess."""
import os

from dassl.utils import read_json
from tests.clip_run_helpers import run, trainer_args, write_fixture_and_clip

SHOTS = 2


def _subset(data_root, seed):
    """The cached few-shot subset of `seed` under the fixture root: (train, val) path lists."""
    folder = os.path.join(data_root, "dtd", "split_fewshot")
    path = os.path.join(folder, f"shot_{SHOTS}-seed_{seed}.json")
    assert os.path.isfile(path), sorted(os.listdir(folder))
    data = read_json(path)
    return [entry[0] for entry in data["train"]], [entry[0] for entry in data["val"]]


def _build(tmp_path, name, seed, *opts):
    """train.py building TaskRes (dataset and model) without training, on a fresh fixture root."""
    data_root, clip_path = write_fixture_and_clip(tmp_path / name, "DescribableTextures", per_class=8)
    args = trainer_args("TaskRes", "TaskRes/adam_lr2e-3_B256_ep100.yaml", data_root, clip_path,
                        tmp_path / name / "out", "DescribableTextures", "DATASET.NUM_SHOTS", str(SHOTS), *opts,
                        flags=["--no-train"])
    args[args.index("--seed") + 1] = str(seed)
    run(args)
    return data_root


def test_fewshot_seed_takes_that_seeds_subset(tmp_path):
    own = _build(tmp_path, "own", 1)
    borrowed = _build(tmp_path, "borrowed", 11, "DATASET.FEWSHOT_SEED", "1")
    # seed 11 with FEWSHOT_SEED 1 draws, from a fresh root, what a seed-1 run draws, and caches it as
    # seed 1's subset (a seed-11 subset of its own would be another draw)
    assert _subset(borrowed, 1) == _subset(own, 1)
    assert os.listdir(os.path.join(borrowed, "dtd", "split_fewshot")) == [f"shot_{SHOTS}-seed_1.json"]
