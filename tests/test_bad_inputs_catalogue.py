"""The catalogue of bad inputs, second part (the first: tests/test_user_errors.py, 41 cases):
selection on a val split that is too small or absent, unreadable training images (in the
training loop, in DataLoader workers, in Tip-Adapter's cache), weights files with missing or
unexpected keys, an unusable feature-cache root, the methods' own settings, and grids that must
stop before their first run. Each case is what a user runs (train.py through its real entry
point, the grid scripts as their own processes) and must end in exit code 2 with one `error:`
message naming the file/key/value and the fix: no traceback, nothing overwritten, no run
that silently selects on nothing."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.clip_run_helpers import trainer_args
from tests.engine_helpers import REPO
from tests.machine_speed import scaled_timeout
from tests.test_user_errors import DATASET, _check_message, _snapshot, setup  # noqa: F401  (module fixture)

TIP, TIP_F, LP, COOP = "TipAdapter/rn50.yaml", "TipAdapterF/rn50.yaml", "LinearProbeCLIP/rn50.yaml", "CoOp/rn50_ep50.yaml"
SMALL_TIP = ["TRAINER.TIP_ADAPTER.SEARCH_STEP", "(4, 3)", "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "1", "OPTIM.MAX_EPOCH", "2"]
SPLIT = os.path.join("dtd", "split_zhou_DescribableTextures.json")


def _copy_with(data_root, tmp, name, edit):
    """A copy of the fixture data whose split file is changed by `edit(split)`; (root, split file)."""
    root = os.path.join(tmp, "data_" + name)
    if not os.path.isdir(root):
        shutil.copytree(data_root, root)
        path = os.path.join(root, SPLIT)
        split = json.load(open(path))
        edit(split, root)
        json.dump(split, open(path, "w"))
    return root, os.path.join(root, SPLIT)


def _no_val(split, root):
    split["val"] = []


def _one_val(split, root):
    split["val"] = split["val"][:1]


def _truncated_train_image(split, root):
    """Every training image cut to its first 300 bytes (the few-shot draw reads some of them)."""
    for entry in split["train"]:
        path = os.path.join(root, "dtd", "images", entry[0])
        data = open(path, "rb").read()
        open(path, "wb").write(data[:300])


def _weights_variants(clip_path, tmp):
    state = torch.load(clip_path)
    missing = {k: v for k, v in state.items() if k not in ("ln_final.bias", "visual.layer1.0.conv2.weight")}
    extra = dict(state, **{"extra.head.weight": torch.zeros(3)})
    paths = {}
    for name, weights in (("missing_keys", missing), ("unexpected_keys", extra)):
        paths[name] = os.path.join(tmp, f"clip_{name}.pt")
        torch.save(weights, paths[name])
    return paths


def _read_only_dir():
    """A folder no process may create files in, even as root (sysfs is mounted read-only for
    writes); None where there is none."""
    for path in ("/sys/kernel", "/proc/sys"):
        probe = os.path.join(path, "fewshot_probe")
        try:
            os.makedirs(probe)
        except OSError:
            return path
        os.rmdir(probe)
    return None


def _cases(s):
    tmp, data, clip = s["tmp"], s["data"], s["clip"]

    def args(out, *opts, trainer="TaskRes", config="TaskRes/adam_lr2e-3_B256_ep100.yaml", root=data, weights=clip):
        return trainer_args(trainer, config, root, weights, os.path.join(tmp, "cat_" + out), DATASET, *opts)

    no_val, no_val_split = _copy_with(data, tmp, "no_val", _no_val)
    one_val, one_val_split = _copy_with(data, tmp, "one_val", _one_val)
    truncated, truncated_split = _copy_with(data, tmp, "truncated", _truncated_train_image)
    weights = _weights_variants(clip, tmp)
    tip = dict(trainer="TipAdapter", config=TIP)
    tip_f = dict(trainer="TipAdapterF", config=TIP_F)
    lp = dict(trainer="LinearProbeCLIP", config=LP)
    coop = dict(trainer="CoOp", config=COOP)
    two = ["DATASET.NUM_SHOTS", "2"]
    val_fix = ["on the val split of DescribableTextures", "per class", "more shots"]
    cases = {
        # selection on a val split with no image of some class (item: a minimum for every selection)
        "tip_no_val": (args("tip_no_val", *two, *SMALL_TIP, root=no_val, **tip),
                       ["TipAdapter chooses alpha and beta", "0 image(s) for 4 classes", *val_fix,
                        "TRAINER.TIP_ADAPTER.SEARCH_HP False"]),
        "tip_f_no_val": (args("tip_f_no_val", *two, *SMALL_TIP, root=no_val, **tip_f),
                         ["TipAdapterF chooses the best epoch and alpha and beta", "0 image(s)", *val_fix,
                          "TEST.FINAL_MODEL last_step"]),
        "lp_no_val": (args("lp_no_val", *two, root=no_val, **lp),
                      ["LinearProbeCLIP chooses C of the logistic regression", "0 image(s)", *val_fix,
                       "another method"]),
        "coop_best_val_no_val": (args("coop_no_val", *two, "TEST.FINAL_MODEL", "best_val", "OPTIM.MAX_EPOCH", "2",
                                      root=no_val, **coop),
                                 ["CoOp chooses the best epoch", "0 image(s)", "TEST.FINAL_MODEL last_step"]),
        "taskres_best_val_no_val": (args("taskres_no_val", *two, "TEST.FINAL_MODEL", "best_val", "OPTIM.MAX_EPOCH",
                                         "2", root=no_val), ["TaskRes chooses the best epoch", "0 image(s)"]),
        "tip_one_val_image": (args("tip_one_val", *two, *SMALL_TIP, root=one_val, **tip),
                              ["1 image(s) for 4 classes and 3 class(es) have fewer", *val_fix]),
        "tip_f_one_val_image": (args("tip_f_one_val", *two, *SMALL_TIP, root=one_val, **tip_f),
                                ["1 image(s) for 4 classes and 3 class(es) have fewer"]),
        "lp_one_val_image": (args("lp_one_val", *two, root=one_val, **lp),
                             ["1 image(s) for 4 classes and 3 class(es) have fewer"]),
        # unreadable training images, wherever they are read
        "truncated_train_jpeg": (args("trunc", *two, "OPTIM.MAX_EPOCH", "1", root=truncated, **coop),
                                 ["annot read image", os.path.join(truncated, "dtd", "images"),
                                  f"listed in {truncated_split}", "Restore the file"]),
        "truncated_train_jpeg_in_worker": (
            args("trunc_w", *two, "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "2", root=truncated, **coop),
            ["annot read image", f"listed in {truncated_split}"]),
        "truncated_train_jpeg_in_tip_cache": (args("trunc_tip", *two, *SMALL_TIP, root=truncated, **tip),
                                              ["annot read image", f"listed in {truncated_split}"]),
        # weights files that do not fit their architecture
        "weights_missing_keys": (args("w_missing", weights=weights["missing_keys"]),
                                 [f"CLIP weights file {weights['missing_keys']} does not fit the tiny-rn architecture",
                                  "2 missing key(s)", "ln_final.bias"]),
        "weights_unexpected_keys": (args("w_extra", weights=weights["unexpected_keys"]),
                                    ["does not fit the tiny-rn architecture", "1 unexpected key(s)",
                                     "extra.head.weight"]),
        # the methods' own settings
        "tip_search_step_zero": (args("tip_step", *two, "TRAINER.TIP_ADAPTER.SEARCH_STEP", "(0, 5)", **tip),
                                 ["TRAINER.TIP_ADAPTER.SEARCH_STEP", "two positive counts"]),
        "tip_augment_epoch_zero": (args("tip_aug", *two, "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "0", **tip),
                                   ["TRAINER.TIP_ADAPTER.AUGMENT_EPOCH = 0", "at least 1"]),
        "tip_search_scale_three": (args("tip_scale", *two, "TRAINER.TIP_ADAPTER.SEARCH_SCALE", "(1, 2, 3)", **tip),
                                   ["TRAINER.TIP_ADAPTER.SEARCH_SCALE", "(beta, alpha)"]),
        "lp_negative_search_steps": (args("lp_steps", *two, "TRAINER.LINEAR_PROBE.SEARCH_STEPS", "-1", **lp),
                                     ["TRAINER.LINEAR_PROBE.SEARCH_STEPS = -1", "8 is the official search"]),
        "unknown_pipeline": (args("pipe", "TRAIN.FEATURE_CACHE.PIPELINE", "fastest"),
                             ["TRAIN.FEATURE_CACHE.PIPELINE", "fastest"]),
    }
    read_only = _read_only_dir()
    if read_only:
        cases["feature_cache_root_read_only"] = (
            args("ro", "TRAIN.FEATURE_CACHE.ROOT", read_only),
            [f"Feature cache: cannot create {read_only}", "TRAIN.FEATURE_CACHE.ROOT", "writable folder"])
    return cases


@pytest.fixture(scope="module")
def outcomes(setup):  # noqa: F811
    before = _snapshot(setup["trained"])
    cases = _cases(setup)
    cases_file = os.path.join(setup["tmp"], "catalogue_cases.json")
    results_file = os.path.join(setup["tmp"], "catalogue_results.json")
    json.dump({name: argv for name, (argv, _) in cases.items()}, open(cases_file, "w"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "cli_driver.py"), os.path.join(REPO, "train.py"),
                    cases_file, results_file], cwd=REPO, env=env, check=True, timeout=scaled_timeout(900))
    return dict(cases=cases, results=json.load(open(results_file)), before=before,
                after=_snapshot(setup["trained"]), setup=setup)


CASE_NAMES = [
    "tip_no_val", "tip_f_no_val", "lp_no_val", "coop_best_val_no_val", "taskres_best_val_no_val", "tip_one_val_image",
    "tip_f_one_val_image", "lp_one_val_image", "truncated_train_jpeg", "truncated_train_jpeg_in_worker",
    "truncated_train_jpeg_in_tip_cache", "weights_missing_keys", "weights_unexpected_keys", "tip_search_step_zero",
    "tip_augment_epoch_zero", "tip_search_scale_three", "lp_negative_search_steps", "unknown_pipeline",
    "feature_cache_root_read_only",
]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_clean_message(outcomes, case):
    if case not in outcomes["cases"]:
        pytest.skip("no read-only folder on this machine")
    result = outcomes["results"][case]
    _check_message(result["code"], result["stderr"], outcomes["cases"][case][1])
    assert outcomes["after"] == outcomes["before"]
    # a selection stopped before training: no model file, no result
    out = outcomes["cases"][case][0][outcomes["cases"][case][0].index("--output-dir") + 1]
    assert not os.path.exists(os.path.join(out, "result.json"))


def test_the_catalogue_is_complete(outcomes):
    assert sorted(set(CASE_NAMES) & set(outcomes["cases"])) == sorted(outcomes["cases"])


# ---------------------------------------------------------------- grids: checked before the first run
def _script(setup, tmp_path, command, *args, **env):
    output = tmp_path / "runs"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "DATA": setup["data"], "OUTPUT": str(output),
                   "SEEDS": "1", **env}
    proc = subprocess.run([sys.executable, "-m", "experiments.script", command, *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=scaled_timeout(600))
    return proc, output


def _no_run_folder(output):
    return not os.path.exists(output) or not any(files for _, _, files in os.walk(output))


def test_paper_grid_without_its_dataset_stops_once_before_any_run(setup, tmp_path):
    proc, output = _script(setup, tmp_path, "paper", "table4")
    _check_message(proc.returncode, proc.stderr, ["table4", "(15 runs)", "none was started", "ImageNet: folder",
                                                   "imagenet", "15 of 15 runs"])  # SEEDS=1
    assert _no_run_folder(output)


def test_sweep_with_a_misspelt_override_stops_once_before_any_run(setup, tmp_path):
    proc, output = _script(setup, tmp_path, "sweep", "coop", "OPTIM.LRR", "0.1", DATASETS="dtd", SHOTS="1 2")
    _check_message(proc.returncode, proc.stderr, ["the coop sweep (2 runs)", 'Unknown config key "OPTIM.LRR"',
                                                   "2 of 2 runs"])
    assert _no_run_folder(output)


def test_main_with_missing_weights_stops_before_any_run(setup, tmp_path):
    nowhere = str(tmp_path / "nowhere.pt")
    proc, output = _script(setup, tmp_path, "main", "taskres", "dtd", "1", "MODEL.BACKBONE.PATH", nowhere)
    _check_message(proc.returncode, proc.stderr, ["MODEL.BACKBONE.PATH", "nowhere.pt", "is not a file"])
    assert _no_run_folder(output)
