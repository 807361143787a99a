"""Aggregate run records into tables: one cell per (method, dataset, shots) holding the values
of its seeds, and averages over datasets that are only computed on a complete grid.

A table's method is the declared method of its runs, labelled as declared (e.g. "CoOp"), with
the trainer when an alternative ran, the variant folder when it is not the method's default,
and the config family when it is not the one the method chooses. The config family is the
config name without the schedule tokens `ep<N>` / `lr<X>` that the official configs vary with
the dataset and shot count. Runs of no declared method are labelled trainer/family/variant.
If one (dataset, shots) cell holds two configs of a family (an ablation), that method is
split by full config name instead.
"""
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from trainers.common.experiment import METHODS, method_of_trainer

from .benchmarks import BENCHMARKS
from .collect import collect_runs
from .seed_summary import spread

_SCHEDULE_TOKEN = re.compile(r"^(ep\d+|lr[\d.]+(e-?\d+)?)$")


def cfg_family(cfg):
    """`adam_lr2e-3_B256_ep200` -> `adam_B256`; `rn50_ep50` -> `rn50`."""
    return "_".join(tok for tok in cfg.split("_") if not _SCHEDULE_TOKEN.match(tok))


def method_label(rec, cfg_name):
    """The label of a record's method (see the module docstring)."""
    declared = METHODS.get(rec.method) or method_of_trainer(rec.trainer)
    if declared is None:
        return "/".join(part for part in (rec.trainer, cfg_name, rec.variant) if part)
    label = declared.label + (f" ({rec.trainer})" if rec.trainer != declared.trainer else "")
    defaults = {name: option.default for name, option in declared.options.items()}
    extra = [rec.variant] if rec.variant and rec.variant != (
        declared.variant(defaults) if declared.variant else "") else []
    if cfg_name != cfg_family(declared.config(rec.dataset, max(rec.shots, 1))):
        extra.append(cfg_name)
    return f"{label} [{', '.join(extra)}]" if extra else label


def group_by_method(records):
    """{method label: [records]}; see the module docstring for what a method is."""
    by_family = defaultdict(list)
    for rec in records:
        by_family[method_label(rec, cfg_family(rec.cfg))].append(rec)
    methods = {}
    for label, recs in by_family.items():
        cfgs_per_cell = defaultdict(set)
        for rec in recs:
            cfgs_per_cell[(rec.dataset, rec.shots)].add(rec.cfg)
        clash = next((cell for cell, cfgs in cfgs_per_cell.items() if len(cfgs) > 1), None)
        if clash is None:
            methods[label] = recs
            continue
        print(f"[parse_results] {label}: {clash[0]} {clash[1]} shots has several configs "
              f"({', '.join(sorted(cfgs_per_cell[clash]))}); listing its configs separately",
              file=sys.stderr)
        for rec in recs:
            methods.setdefault(method_label(rec, rec.cfg), []).append(rec)
    return dict(sorted(methods.items()))


@dataclass
class Cell:
    """The seeds of one (method, dataset, shots): finished values and what is missing."""
    expected: Tuple  # seeds a complete cell has; (None,) for a seedless method
    values: Dict = field(default_factory=dict)  # seed -> value
    unfinished: Dict = field(default_factory=dict)  # seed -> run folder without a result
    left_out: Dict = field(default_factory=dict)  # seed -> run folder of a seed not expected
    infos: Dict = field(default_factory=dict)  # seed -> the finished run's result.json

    @property
    def n(self):
        return len(self.values)

    @property
    def missing(self):
        return [s for s in self.expected if s not in self.values]

    @property
    def complete(self):
        return not self.missing

    @property
    def mean(self):
        return statistics.fmean(self.values.values()) if self.values else None

    def spread(self, ci95=False):
        return spread(list(self.values.values()), ci95) if self.values else None


@dataclass
class Average:
    """Mean over datasets of the cell means. Its spread is that of the per-seed averages
    (for each seed, the mean over datasets), so it measures seed noise, not dataset spread;
    it is only given when every averaged cell has the same seeds."""
    mean: Optional[float]
    spread: Optional[float]
    n: int  # cells averaged (0 when not averaged)
    n_complete: int  # cells with all their seeds
    expected: int  # cells a complete average needs
    partial: bool  # averaged although cells or seeds are missing (--allow-partial)


def average_cells(cells, allow_partial=False, ci95=False):
    """Average a list of cells (one per dataset); mean None when the grid is incomplete."""
    usable = [c for c in cells if c.values]
    n_complete = sum(1 for c in cells if c.complete)
    complete = n_complete == len(cells)
    if not usable or not (complete or allow_partial):
        return Average(None, None, 0, n_complete, len(cells), False)
    mean = statistics.fmean(c.mean for c in usable)
    seed_sets = {tuple(sorted(c.values, key=str)) for c in usable}
    spread_value = None
    if len(seed_sets) == 1:
        seeds = seed_sets.pop()
        if len(seeds) > 1:
            per_seed = [statistics.fmean(c.values[s] for c in usable) for s in seeds]
            spread_value = spread(per_seed, ci95)
    return Average(mean, spread_value, len(usable), n_complete, len(cells), not complete)


def build_cells(records, expected_seeds):
    """{(dataset, shots): Cell} of one method's records. A method whose runs are all seedless
    (zero-shot) expects one run per cell instead of `expected_seeds`."""
    seedless = all(rec.seed is None for rec in records)
    expected = (None,) if seedless else tuple(expected_seeds)
    cells = defaultdict(lambda: Cell(expected))
    for rec in records:
        cell = cells[(rec.dataset, rec.shots)]
        if not seedless and rec.seed not in expected:
            cell.left_out[rec.seed] = rec.path
        elif rec.result is None:
            cell.unfinished[rec.seed] = rec.path
        else:
            cell.values[rec.seed] = rec.result.value
            cell.infos[rec.seed] = rec.info
    return cells, expected


@dataclass
class MethodTable:
    """Rows: datasets; columns: shots; plus the average row over `averaged` datasets."""
    method: str
    datasets: List[str]
    averaged: List[str]
    shots: List[int]
    cells: Dict  # (dataset, shots) -> Cell (an empty Cell where nothing ran)
    averages: Dict  # shots -> Average
    trainer: str = ""  # the trainer of its runs


def build_method_tables(records, datasets, seeds, shots=None, allow_partial=False, ci95=False):
    """One table per method. `datasets` are averaged (in this order); datasets found beyond
    them get rows but stay out of the average. `shots` None: the shots each method ran."""
    tables = []
    for method, recs in group_by_method(records).items():
        cells, expected = build_cells(recs, seeds)
        found = sorted({rec.dataset for rec in recs} - set(datasets))
        columns = sorted(shots if shots is not None else {rec.shots for rec in recs})
        rows = list(datasets) + found
        full = {(d, k): cells[(d, k)] if (d, k) in cells else Cell(expected)
                for d in rows for k in columns}
        averages = {k: average_cells([full[(d, k)] for d in datasets], allow_partial, ci95)
                    for k in columns}
        tables.append(MethodTable(method, rows, list(datasets), columns, full, averages,
                                  recs[0].trainer))
    return tables


def fewshot_tables(root, datasets, seeds, shots=None, keyword="accuracy", test_log=False,
                   allow_partial=False, ci95=False):
    """The method tables of an output tree: its runs on `datasets` (None: every dataset found,
    the 11 benchmarks averaged) at `shots` (None: those found)."""
    records = collect_runs(root, keyword, test_log, datasets)
    if shots:
        records = [r for r in records if r.shots in shots]
    return build_method_tables(records, datasets or BENCHMARKS, seeds, shots, allow_partial,
                               ci95)


def harmonic_mean(base, new):
    """HM of base and new accuracy, the base-to-new summary number."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def _split_groups(*record_lists):
    """Group the union of several trees' records by method, then split each group back by
    tree, so a method has the same label in every tree."""
    owner = {rec: i for i, recs in enumerate(record_lists) for rec in recs}
    for method, recs in group_by_method([r for recs in record_lists for r in recs]).items():
        parts = [[] for _ in record_lists]
        for rec in recs:
            parts[owner[rec]].append(rec)
        yield method, parts


def _cells_for(records, rows, shots, seeds):
    cells, expected = build_cells([r for r in records if r.shots == shots], seeds)
    return {d: cells[(d, shots)] if (d, shots) in cells else Cell(expected) for d in rows}


@dataclass
class Base2NewTable:
    """One method at one shot count: base and new accuracy per dataset; HM of the means."""
    method: str
    shots: int
    datasets: List[str]
    base: Dict  # dataset -> Cell
    new: Dict  # dataset -> Cell
    base_avg: Average
    new_avg: Average


def build_base2new_tables(base_records, new_records, datasets, seeds, allow_partial=False,
                          ci95=False):
    tables = []
    for method, (base_recs, new_recs) in _split_groups(base_records, new_records):
        for shots in sorted({r.shots for r in base_recs + new_recs}):
            base = _cells_for(base_recs, datasets, shots, seeds)
            new = _cells_for(new_recs, datasets, shots, seeds)
            tables.append(Base2NewTable(
                method, shots, list(datasets), base, new,
                average_cells(list(base.values()), allow_partial, ci95),
                average_cells(list(new.values()), allow_partial, ci95)))
    return tables


@dataclass
class DGRow:
    """One method at one shot count: the source and every target; average over targets."""
    method: str
    shots: int
    cells: Dict  # dataset (source and targets) -> Cell
    target_avg: Average


def build_dg_rows(source_records, target_records, source, targets, seeds, allow_partial=False,
                  ci95=False):
    rows = []
    for method, (source_recs, target_recs) in _split_groups(source_records, target_records):
        if not target_recs:
            continue  # trained on the source but never tested on the targets: not a DG run
        for shots in sorted({r.shots for r in target_recs}):
            cells = _cells_for(source_recs, [source], shots, seeds)
            cells.update(_cells_for(target_recs, targets, shots, seeds))
            rows.append(DGRow(method, shots, cells,
                              average_cells([cells[t] for t in targets], allow_partial, ci95)))
    return rows
