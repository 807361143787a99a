"""Read the runs of an output tree (see `layout`) into one pandas DataFrame: each run folder's
final metric (from result.json, else from its logs as the reference aggregator reads them) and
what its result.json records."""
import json
import os
import os.path as osp
import re
import sys
from collections import namedtuple

import pandas as pd

from trainers.common.experiment import METHODS, method_of_trainer

from .layout import (LOG_FILE, RESULT_FILE, SPECIAL_TOP_DIRS, has_run_files, list_subdirs,
                     natural_key, parse_seed_dir, parse_setting_dir)


class ResultsError(Exception):
    """Input the aggregator cannot use: a message for the user, no traceback."""


END_OF_TRAINING = "Finish training"
RESULT_BLOCK = "=> result"

# Metric names as printed in the log block -> other names the result record may use.
_RECORD_ALIASES = {"error": ("error", "error_rate"), "error_rate": ("error_rate", "error")}


RunResult = namedtuple("RunResult", "value source")  # the metric in percent, the file it came from


def _warn(message):
    print(f"[parse_results] {message}", file=sys.stderr)


def value_after_signal(lines, keyword, signal):
    """Last `* <keyword>: X%` value after the first line equal to `signal`, or None."""
    pattern = re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")
    value, seen_signal = None, False
    for line in lines:
        line = line.strip()
        if seen_signal:
            match = pattern.search(line)
            value = float(match.group(1)) if match else value
        seen_signal = seen_signal or line == signal
    return value


def _read_record(run_dir):
    """The run's result.json ({} without one, or when it cannot be read: then the logs count)."""
    path = osp.join(run_dir, RESULT_FILE)
    if not osp.isfile(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        _warn(f"cannot read {path} ({error}); falling back to the logs")
        return {}


def read_run_result(run_dir, keyword="accuracy", signal=END_OF_TRAINING, record=None):
    """The run's final `keyword` value (a RunResult), or None if it has not finished. A resumed
    run leaves `log.txt`, then `log.txt-<time>`: the newest log holding a result counts.
    `record`: its result.json, when already read."""
    record = _read_record(run_dir) if record is None else record
    for name in _RECORD_ALIASES.get(keyword, (keyword,)):
        if name in record:
            return RunResult(float(record[name]), osp.join(run_dir, RESULT_FILE))
    logs = sorted((n for n in os.listdir(run_dir) if n == LOG_FILE or n.startswith(LOG_FILE + "-")),
                  key=lambda name: (name != LOG_FILE, natural_key(name)))  # oldest first
    newer_without_result = []
    for name in reversed(logs):
        with open(osp.join(run_dir, name), errors="replace") as f:
            value = value_after_signal(f, keyword, signal)
        if value is not None:
            if newer_without_result:
                _warn(f"using {osp.join(run_dir, name)}; the newer log(s) "
                      f"{', '.join(newer_without_result)} have no result after '{signal}' "
                      f"(interrupted rerun?)")
            return RunResult(value, osp.join(run_dir, name))
        newer_without_result.append(name)
    return None


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
        found = has_run_files(path)
        if found:  # a seedless run inside a variant folder
            yield name, None, path
        for sub in list_subdirs(path):
            sub_seed = parse_seed_dir(sub)
            if sub_seed is None:
                _warn(f"ignored {osp.join(path, sub)}: expected seed<N> folders below a variant "
                      f"folder")
                continue
            found = True
            yield name, sub_seed, osp.join(path, sub)
        if not found:
            _warn(f"ignored {path}: neither a seed<N> folder nor a variant folder holding "
                  f"seed<N> folders")


RECORDED = ("backbone", "weights", "num_classes", "trainable_params", "pipeline", "protocol", "subset_hash",
            "cost")
FRAME_COLUMNS = ("method", "label", "trainer", "dataset", "shots", "seed", "cfg", "variant",
                 *RECORDED, "path", "source", "finished")


def collect_runs(root, keyword="accuracy", eval_only=False, datasets=None):
    """One unlabelled row per run folder of `root/<dataset>/<Trainer>/<cfg>_<K>shots/...` (details
    from result.json's request, else the folder names). `eval_only`: the runs are tests (logs read
    after `=> result`), as those of evaluation-only methods always are."""
    if not osp.isdir(root):
        raise ResultsError(f"{root} is not a folder")
    rows = []
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
                    _warn(f"ignored {osp.join(trainer_path, setting)}: not named <cfg>_<K>shots")
                    continue
                for variant, seed, path in _run_folders(osp.join(trainer_path, setting)):
                    info = _read_record(path)
                    result = read_run_result(path, keyword, signal, info)
                    named = dict(dataset=dataset, trainer=trainer, cfg=parsed[0], shots=parsed[1],
                                 variant=variant, seed=seed)
                    rows.append({"method": "", **named, **(info.get("request") or {}),
                                 keyword: result.value if result else float("nan"),
                                 **{key: info.get(key) for key in RECORDED},
                                 "path": path, "source": result.source if result else None,
                                 "finished": result is not None})
    frame = pd.DataFrame(rows, columns=[c for c in FRAME_COLUMNS if c != "label"] + [keyword])
    return frame.astype({"seed": "Int64", "shots": int, keyword: float})  # seed <NA>: zero-shot


_SCHEDULE_TOKEN = re.compile(r"^(ep\d+|lr[\d.]+(e-?\d+)?)$")


def cfg_family(cfg):
    """`adam_lr2e-3_B256_ep200` -> `adam_B256`; `rn50_ep50` -> `rn50`."""
    return "_".join(tok for tok in cfg.split("_") if not _SCHEDULE_TOKEN.match(tok))


def method_label(method, trainer, dataset, shots, variant, cfg_name, pipeline=None, protocol=None):
    """A run's label in tables: the declared label, with the trainer when an alternative ran,
    the variant folder when it is not the method's default, the config family when it is not
    the one the method chooses, and `fast` for trained runs of the fast pipeline (so no cell
    averages them with exact runs). Runs of no declared method: trainer/config/variant."""
    declared = METHODS.get(method) or method_of_trainer(trainer)
    fast = isinstance(pipeline, dict) and pipeline.get("name") == "fast" and \
        (declared is None or declared.trains)
    oracle = " [ORACLE: selected on test]" if protocol == "oracle" else ""
    if declared is None:
        return "/".join(part for part in (trainer, cfg_name, variant) if part) + \
            (" [fast]" if fast else "") + (f" [{protocol}]" if protocol and not oracle else "") + oracle
    label = declared.label + (f" ({trainer})" if trainer != declared.trainer else "")
    defaults = {name: option.default for name, option in declared.options.items()}
    default_variant = declared.variant(defaults) if declared.variant else ""
    extra = [variant] if variant and variant != default_variant else []
    if cfg_name != cfg_family(declared.config(dataset, max(shots, 1))):
        extra.append(cfg_name)
    if fast:
        extra.append("fast")
    # A protocol other than the method's default is named (oracle loudly), so no cell mixes them.
    if protocol and protocol != declared.protocols[0] and protocol != "oracle" and \
            not (variant or "").endswith(protocol):
        extra.append(protocol)
    return (f"{label} [{', '.join(extra)}]" if extra else label) + oracle


def add_labels(frame):
    """The frame with its `label` column: by config family (the official schedules vary per
    dataset and shots), split by full config name where a cell holds two configs of one family."""
    def text(value):  # a field a run does not record is NaN in the frame
        return value if isinstance(value, str) else None

    def labels(rows, cfg_column):
        return [method_label(row.method, row.trainer, row.dataset, row.shots, text(row.variant),
                             row[cfg_column], row.pipeline, text(row.protocol)) for _, row in rows.iterrows()]
    frame = frame.assign(family=frame.cfg.map(cfg_family))
    frame.insert(1, "label", labels(frame, "family"))
    configs = frame.groupby(["label", "dataset", "shots"]).cfg.nunique()
    for name, clashes in configs[configs > 1].groupby(level="label"):
        dataset, shots = clashes.index[0][1:]
        cfgs = sorted(frame.cfg[(frame.label == name) & (frame.dataset == dataset)
                                & (frame.shots == shots)].unique())
        _warn(f"{name}: {dataset} {shots} shots has several configs ({', '.join(cfgs)}); "
              f"listing its configs separately")
        rows = frame.label == name
        frame.loc[rows, "label"] = labels(frame[rows], "cfg")
    return frame.drop(columns="family")


def runs_frame(root, keyword="accuracy", eval_only=False, datasets=None):
    """The runs of an output tree, one row per run folder, labelled as in the tables (columns:
    FRAME_COLUMNS and the `keyword` value, NaN when the run has not finished)."""
    frame = add_labels(collect_runs(root, keyword, eval_only, datasets))
    return frame[list(FRAME_COLUMNS[:-2]) + [keyword, "source", "finished"]]
