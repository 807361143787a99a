"""Walk an output tree (see `layout`) and read every run folder's result."""
import json
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Mapping, Optional

from .errors import ResultsError
from trainers.common.experiment import method_of_trainer

from .layout import (RESULT_FILE, SPECIAL_TOP_DIRS, has_run_files, list_subdirs,
                     parse_seed_dir, parse_setting_dir)
from .run_result import END_OF_TRAINING, RESULT_BLOCK, RunResult, read_run_result


@dataclass(frozen=True)
class RunRecord:
    dataset: str
    trainer: str
    cfg: str
    shots: int
    variant: str  # "" when the setting folder holds the seed folders directly
    seed: Optional[int]  # None for seedless (zero-shot) runs
    path: str
    result: Optional[RunResult]  # None: the run has not finished (crashed, running, ...)
    method: str = ""  # the declared method, as result.json records it ("" for reference logs)
    info: Mapping = field(default_factory=dict, compare=False, hash=False)  # all of result.json


def _result_json(path):
    try:
        with open(osp.join(path, RESULT_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def make_record(dataset, trainer, cfg, shots, variant, seed, path, result):
    """A run's record: what result.json's request says it was, else what its folders say."""
    info = _result_json(path)
    req = info.get("request") or {}
    if req:
        dataset, trainer, cfg = req["dataset"], req["trainer"], req["cfg"]
        shots, variant, seed = req["shots"], req["variant"], req["seed"]
    return RunRecord(dataset, trainer, cfg, shots, variant, seed, path, result,
                     req.get("method", ""), info)


def _ignored(path, why):
    print(f"[parse_results] ignored {path}: {why}", file=sys.stderr)


def _run_folders(setting_path):
    """(variant, seed, path) of every run folder below a `<cfg>_<K>shots` folder."""
    if has_run_files(setting_path):
        yield "", None, setting_path
    for name in list_subdirs(setting_path):
        path = osp.join(setting_path, name)
        seed = parse_seed_dir(name)
        if seed is not None:
            yield "", seed, path
            continue
        found = False
        if has_run_files(path):  # a seedless run inside a variant folder
            found = True
            yield name, None, path
        for sub in list_subdirs(path):
            sub_seed = parse_seed_dir(sub)
            if sub_seed is None:
                _ignored(osp.join(path, sub), "expected seed<N> folders below a variant folder")
                continue
            found = True
            yield name, sub_seed, osp.join(path, sub)
        if not found:
            _ignored(path, "neither a seed<N> folder nor a variant folder holding seed<N> folders")


def collect_runs(root, keyword="accuracy", eval_only=False, datasets=None):
    """Every run folder of the tree `root/<dataset>/<Trainer>/<cfg>_<K>shots/...`.

    Folders that hold other trees (eval/, dg/, base2new/) are not datasets and are skipped.
    `eval_only`: the runs are tests of trained models (parse logs after `=> result`); the runs
    of evaluation-only methods always are. `datasets`: read only these dataset folders.
    """
    if not osp.isdir(root):
        raise ResultsError(f"{root} is not a folder")
    records = []
    for dataset in list_subdirs(root):
        if dataset in SPECIAL_TOP_DIRS or (datasets is not None and dataset not in datasets):
            continue
        for trainer in list_subdirs(osp.join(root, dataset)):
            declared = method_of_trainer(trainer)
            tests_only = eval_only or (declared is not None and not declared.trains)
            signal = RESULT_BLOCK if tests_only else END_OF_TRAINING
            trainer_path = osp.join(root, dataset, trainer)
            for setting in list_subdirs(trainer_path):
                parsed = parse_setting_dir(setting)
                if parsed is None:
                    _ignored(osp.join(trainer_path, setting), "not named <cfg>_<K>shots")
                    continue
                cfg, shots = parsed
                for variant, seed, path in _run_folders(osp.join(trainer_path, setting)):
                    result = read_run_result(path, keyword, signal)
                    records.append(make_record(dataset, trainer, cfg, shots, variant, seed,
                                               path, result))
    return records
