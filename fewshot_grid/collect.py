"""Walk an output tree (see `layout`) and read every run folder's result."""
import os.path as osp
import sys
from dataclasses import dataclass
from typing import Optional

from .errors import ResultsError
from .layout import (SPECIAL_TOP_DIRS, ZEROSHOT_TRAINERS, has_run_files, list_subdirs,
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
    `eval_only`: the runs are tests of trained models (parse logs after `=> result`); zero-shot
    trainers are always eval-only. `datasets`: read only these dataset folders.
    """
    if not osp.isdir(root):
        raise ResultsError(f"{root} is not a folder")
    records = []
    for dataset in list_subdirs(root):
        if dataset in SPECIAL_TOP_DIRS or (datasets is not None and dataset not in datasets):
            continue
        for trainer in list_subdirs(osp.join(root, dataset)):
            signal = RESULT_BLOCK if eval_only or trainer in ZEROSHOT_TRAINERS else END_OF_TRAINING
            trainer_path = osp.join(root, dataset, trainer)
            for setting in list_subdirs(trainer_path):
                parsed = parse_setting_dir(setting)
                if parsed is None:
                    _ignored(osp.join(trainer_path, setting), "not named <cfg>_<K>shots")
                    continue
                cfg, shots = parsed
                for variant, seed, path in _run_folders(osp.join(trainer_path, setting)):
                    result = read_run_result(path, keyword, signal)
                    records.append(RunRecord(dataset, trainer, cfg, shots, variant, seed,
                                             path, result))
    return records
