"""Read the runs of an output tree (see `layout`): each run folder's final metric and what
result.json records about it, as records or one pandas DataFrame.

A run's metric comes from its result record (`result.json`, written at the end of a finished
run); without it the value is parsed from the logs the way the reference aggregator does: the
last `* <keyword>: X%` line after the line `Finish training` (training runs) or after `=> result`
(eval-only runs). A resumed or repeated run leaves several logs (`log.txt`, then
`log.txt-YYYY-MM-DD-HH-MM-SS[-n]`, see `dassl.utils.logger`); the newest log holding a result wins.
"""
import json
import os
import os.path as osp
import re
import sys
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pandas as pd

from trainers.common.experiment import METHODS, method_of_trainer

from .layout import (LOG_FILE, RESULT_FILE, SPECIAL_TOP_DIRS, has_run_files, list_subdirs,
                     parse_seed_dir, parse_setting_dir)


class ResultsError(Exception):
    """Input the aggregator cannot use (missing folder, no finished run, ...): a message for
    the user, no traceback."""


END_OF_TRAINING = "Finish training"
RESULT_BLOCK = "=> result"

# Metric names as printed in the log block -> other names the result record may use.
_RECORD_ALIASES = {"error": ("error", "error_rate"), "error_rate": ("error_rate", "error")}


@dataclass(frozen=True)
class RunResult:
    value: float  # the metric, in percent
    source: str  # the file it was read from


def metric_regex(keyword):
    """The reference pattern of a metric line, e.g. `* accuracy: 81.0%`."""
    return re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")


def value_after_signal(lines, keyword, signal):
    """Last `* <keyword>: X%` value after the first line equal to `signal`, or None."""
    pattern = metric_regex(keyword)
    seen_signal = False
    value = None
    for line in lines:
        line = line.strip()
        if line == signal:
            seen_signal = True
            continue
        if seen_signal:
            match = pattern.search(line)
            if match:
                value = float(match.group(1))
    return value


def _log_order(name):
    """Sort key: `log.txt` first, then rotated logs by their time stamp and counter."""
    if name == LOG_FILE:
        return ("", 0)
    stamp = name[len(LOG_FILE) + 1:]
    parts = stamp.split("-")
    counter = int(parts[6]) if len(parts) > 6 and parts[6].isdigit() else 0
    return ("-".join(parts[:6]), counter)


def log_files(run_dir):
    """All logs of a run folder, oldest first."""
    names = [n for n in os.listdir(run_dir)
             if n == LOG_FILE or n.startswith(LOG_FILE + "-")]
    return [osp.join(run_dir, n) for n in sorted(names, key=_log_order)]


def _warn(message):
    print(f"[parse_results] {message}", file=sys.stderr)


def _from_record(path, keyword):
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        _warn(f"cannot read {path} ({error}); falling back to the logs")
        return None
    for name in _RECORD_ALIASES.get(keyword, (keyword,)):
        if name in record:
            return RunResult(float(record[name]), path)
    return None


def _from_logs(run_dir, keyword, signal):
    newer_without_result = []
    for path in reversed(log_files(run_dir)):
        with open(path, errors="replace") as f:
            value = value_after_signal(f, keyword, signal)
        if value is not None:
            if newer_without_result:
                _warn(f"using {path}; the newer log(s) {', '.join(newer_without_result)} "
                      f"have no result after '{signal}' (interrupted rerun?)")
            return RunResult(value, path)
        newer_without_result.append(osp.basename(path))
    return None


def read_run_result(run_dir, keyword="accuracy", signal=END_OF_TRAINING):
    """The run's final `keyword` value, or None if the run has not (successfully) finished."""
    record = osp.join(run_dir, RESULT_FILE)
    if osp.isfile(record):
        result = _from_record(record, keyword)
        if result is not None:
            return result
    return _from_logs(run_dir, keyword, signal)


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
    _warn(f"ignored {path}: {why}")


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


_SCHEDULE_TOKEN = re.compile(r"^(ep\d+|lr[\d.]+(e-?\d+)?)$")


def cfg_family(cfg):
    """`adam_lr2e-3_B256_ep200` -> `adam_B256`; `rn50_ep50` -> `rn50`."""
    return "_".join(tok for tok in cfg.split("_") if not _SCHEDULE_TOKEN.match(tok))


def method_label(method, trainer, dataset, shots, variant, cfg_name, pipeline=None):
    """A run's label in tables: the declared label, with the trainer when an alternative ran,
    the variant folder when it is not the method's default, and the config family when it is
    not the one the method chooses. Runs of no declared method: trainer/config/variant.
    Trained runs of the fast pipeline get their own label (`... [fast]`), so no cell averages
    them with exact runs (reference and exact-cached-eval give identical results and share a
    label; evaluation-only methods see exact test features in every pipeline)."""
    declared = METHODS.get(method) or method_of_trainer(trainer)
    fast = isinstance(pipeline, dict) and pipeline.get("name") == "fast" and \
        (declared is None or declared.trains)
    if declared is None:
        return "/".join(part for part in (trainer, cfg_name, variant) if part) + \
            (" [fast]" if fast else "")
    label = declared.label + (f" ({trainer})" if trainer != declared.trainer else "")
    defaults = {name: option.default for name, option in declared.options.items()}
    default_variant = declared.variant(defaults) if declared.variant else ""
    extra = [variant] if variant and variant != default_variant else []
    if cfg_name != cfg_family(declared.config(dataset, max(shots, 1))):
        extra.append(cfg_name)
    if fast:
        extra.append("fast")
    return f"{label} [{', '.join(extra)}]" if extra else label


def add_labels(frame):
    """Set the `label` column. Runs are labelled by config family (so the schedule that the
    official configs vary per dataset and shots stays one method); a label whose (dataset,
    shots) cell holds two configs of one family (an ablation) is split by full config name."""
    def label(row, cfg_column):
        return method_label(row.method, row.trainer, row.dataset, row.shots, row.variant,
                            row[cfg_column], row.pipeline)
    frame = frame.assign(family=frame.cfg.map(cfg_family))
    frame["label"] = [label(row, "family") for _, row in frame.iterrows()] if len(frame) else []
    configs = frame.groupby(["label", "dataset", "shots"]).cfg.nunique()
    for name, clashes in configs[configs > 1].groupby(level="label"):
        dataset, shots = clashes.index[0][1:]
        cfgs = sorted(frame.cfg[(frame.label == name) & (frame.dataset == dataset)
                                & (frame.shots == shots)].unique())
        print(f"[parse_results] {name}: {dataset} {shots} shots has several configs "
              f"({', '.join(cfgs)}); listing its configs separately", file=sys.stderr)
        rows = frame.label == name
        frame.loc[rows, "label"] = [label(row, "cfg") for _, row in frame[rows].iterrows()]
    return frame.drop(columns="family")


FRAME_COLUMNS = ("method", "label", "trainer", "dataset", "shots", "seed", "cfg", "variant",
                 "backbone", "weights", "num_classes", "trainable_params", "pipeline", "path",
                 "source", "finished")


def records_frame(records, keyword="accuracy"):
    """One row per run record; the metric column is named `keyword` (NaN: unfinished)."""
    rows = [{"method": r.method, "trainer": r.trainer, "dataset": r.dataset, "shots": r.shots,
             "seed": r.seed, "cfg": r.cfg, "variant": r.variant,
             keyword: r.result.value if r.result else float("nan"),
             "backbone": r.info.get("backbone"), "weights": r.info.get("weights"),
             "num_classes": r.info.get("num_classes"),
             "trainable_params": r.info.get("trainable_params"),
             "pipeline": r.info.get("pipeline"), "path": r.path,
             "source": r.result.source if r.result else None,
             "finished": r.result is not None} for r in records]
    columns = [c for c in FRAME_COLUMNS if c != "label"] + [keyword]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seed"] = frame.seed.astype("Int64")  # None for seedless (zero-shot) runs
    frame["shots"] = frame.shots.astype(int)
    frame[keyword] = frame[keyword].astype(float)
    return add_labels(frame)[list(FRAME_COLUMNS[:-2]) + [keyword, "source", "finished"]]


def runs_frame(root, keyword="accuracy", eval_only=False, datasets=None):
    """The runs of an output tree as one DataFrame, one row per run folder: method, label (as
    in the tables), trainer, dataset, shots, seed (<NA> for zero-shot), cfg, variant, backbone,
    weights, num_classes, trainable_params, pipeline, path, the `keyword` value (NaN when the
    run has not finished), source (the file it was read from) and finished."""
    return records_frame(collect_runs(root, keyword, eval_only, datasets), keyword)
