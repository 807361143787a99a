"""Parallel sweep jobs on one dataset share one frozen-feature cache safely.

Two runs that need the same images (TaskRes and CLIP-Adapter, same dataset, shots and seed)
start together in two local workers on an empty cache: one encodes the test and training
images, the other waits for it or reads its shards. Every image must be encoded once, the
shards must be intact (no temp or lock files left), and the results must equal those of the
same two runs made one after the other on a cache of their own.
"""
import json
import os
import re

from tests.dataset_fixtures import write_fixture
from tests.test_sweep import clean_env, run_sweep
from tests.tiny_clip import save_tiny_clip
from trainers.common import feature_cache

RUNS = ("dtd/TaskRes/adam_lr2e-3_B256_ep100_1shots/seed1", "dtd/CLIP_Adapter/rn50_ep50_1shots/seed1")
ENCODING = re.compile(r"Feature cache: encoding (\d+) of (\d+) (\w+) images")
FOUND = re.compile(r"Feature cache: all (\d+) (\w+) images found")


def sweep_with_cache(tmp_path, name, workers, data, clip_path):
    cache = tmp_path / f"cache_{name}"
    out = tmp_path / name
    run_sweep("--methods", "taskres", "clip_adapter", "--datasets", "dtd", "--shots", "1",
              "--seeds", "1", "--data", data, "--output", out, "--gpus", "none",
              "--workers", workers, "--", "TRAIN.FEATURE_CACHE.ENABLED", "True",
              "OPTIM.MAX_EPOCH", "2", "MODEL.BACKBONE.PATH", clip_path, "INPUT.SIZE", "(32, 32)",
              "DATALOADER.NUM_WORKERS", "0",
              env=clean_env(tmp_path, FEWSHOT_FEATURE_CACHE=str(cache)))
    return out, cache


def result(run_dir):
    with open(run_dir / "result.json") as f:
        record = json.load(f)
    record.pop("finished")
    return record


def test_parallel_jobs_share_the_feature_cache(tmp_path):
    data = tmp_path / "data"
    write_fixture(data, "DescribableTextures")
    clip_path = save_tiny_clip(tmp_path)
    together, cache = sweep_with_cache(tmp_path, "together", 2, data, clip_path)
    alone, _ = sweep_with_cache(tmp_path, "alone", 1, data, clip_path)

    for run in RUNS:  # same numbers as with a cache built without a concurrent job
        assert result(together / run) == result(alone / run)

    encoded, wanted = {}, {}
    for run in RUNS:
        log = (together / run / "sweep.log").read_text()
        for n, total, split in ENCODING.findall(log):
            encoded[split] = encoded.get(split, 0) + int(n)
            wanted[split] = int(total)
        for total, split in FOUND.findall(log):
            wanted[split] = int(total)
    assert set(wanted) == {"test", "train"}
    assert encoded == wanted  # every image encoded once over both jobs, none twice

    shards = []
    for folder, _, names in os.walk(cache):
        assert not [n for n in names if n.endswith(".tmp") or n.startswith(".lock-")], names
        shards += [os.path.join(folder, n) for n in names if n.endswith(feature_cache.SHARD_SUFFIX)]
    assert len(shards) == 2  # one per feature set (test, train views): nothing written twice
    for path in shards:
        header = feature_cache.read_shard_header(path)  # raises on a damaged shard
        features = feature_cache.read_shard_features(path, header)
        assert features.shape[0] == len(header["digests"])
