"""Read the final metric of one run folder.

The engine's result record (`result.json`, written at the end of a finished run) is preferred;
without it the value is parsed from the logs the way the reference aggregator does: the last
`* <keyword>: X%` line after the line `Finish training` (training runs) or after `=> result`
(eval-only runs). A resumed or repeated run leaves several logs (`log.txt`, then
`log.txt-YYYY-MM-DD-HH-MM-SS[-n]`, see `dassl.utils.logger`); the newest log holding a result wins.
"""
import json
import os
import os.path as osp
import re
import sys
from dataclasses import dataclass

from .layout import LOG_FILE, RESULT_FILE

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
