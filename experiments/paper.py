"""The tables and figures of the TaskRes paper (Yu et al., CVPR 2023), declared as data.

Each `PaperItem` says which rows the paper shows (a declared method plus option values, with
the paper's label), which datasets, shot counts, backbones and domain-generalisation targets
it covers, and how it is laid out. `cells()` turns an item into the runs it needs (seeds 1 2 3,
the settings each method declares), each with its run folder, so the same plan drives the run
command (`bash scripts/paper/<item>.sh`, see `experiments.paper_run`) and the render
(`python parse_results.py OUTPUT --paper <item>`, see `experiments.paper_render`).

Every grid can be narrowed (`narrowed`): DATASETS, SHOTS, SEEDS, BACKBONES and TARGETS in the
scripts, the same flags in parse_results.py, so every item also runs on the demo data.
"""
import dataclasses
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from dassl.utils.errors import UserError
from trainers.common.experiment import DEFAULT_BACKBONE

from . import layout, plan
from .benchmarks import BENCHMARKS, DG_SOURCE, DG_TARGETS, SEEDS, SHOTS

ALL_BACKBONES = ("RN50", "RN101", "ViT-B/32", "ViT-B/16")
ENHANCED_BASE_DIR_ENV = "STRONG_BASE"  # where the enhanced bases are made and read
DEFAULT_ENHANCED_BASE_DIR = "strong_base"


@dataclass(frozen=True)
class Row:
    label: str  # as in the paper
    method: str  # a declared method (trainers.common.experiment)
    settings: Tuple[Tuple[str, str], ...] = ()  # its option values, e.g. (("ALPHA", "0.3"),)
    enhanced: bool = False  # TaskRes*: ENHANCED_BASE is the enhanced base made for the cell


@dataclass(frozen=True)
class PaperItem:
    name: str  # command name: scripts/paper/<name>.sh, --paper <name>
    title: str
    rows: Tuple[Row, ...]
    # Layout: "shots" (rows x shot counts), "backbones" (rows x backbones), "dg" ((backbone,
    # row) x source and targets), "datasets" (one rows x shots table per dataset + average),
    # "params" (rows x shots, with tuned parameters), "residual" (one line per dataset).
    layout: str
    datasets: Tuple[str, ...] = (DG_SOURCE,)
    shots: Tuple[int, ...] = SHOTS
    backbones: Tuple[str, ...] = (DEFAULT_BACKBONE,)
    dg_targets: Tuple[str, ...] = ()
    average: bool = False  # each cell is the mean over the datasets (Table 3)
    plot: bool = False  # a PNG figure too


ZERO_SHOT = Row("Zero-shot CLIP", "zeroshot")
LINEAR_PROBE = Row("Linear-probe CLIP", "linear_probe")
COOP = Row("CoOp", "coop")
CLIP_ADAPTER = Row("CLIP-Adapter", "clip_adapter")
TIP_ADAPTER_F = Row("Tip-Adapter-F", "tip_adapter_f")
TASKRES = Row("TaskRes", "taskres")
TASKRES_STAR = Row("TaskRes*", "taskres", enhanced=True)
TABLE5_ALPHAS = ("0.1", "0.3", "0.5", "0.7", "0.9", "1.0")

ITEMS: Dict[str, PaperItem] = {item.name: item for item in (
    PaperItem("fig1", "Fig. 1: ImageNet accuracy against the number of tuned parameters",
              (ZERO_SHOT, COOP, CLIP_ADAPTER, TIP_ADAPTER_F, TASKRES), "params", plot=True),
    PaperItem("fig3", "Fig. 3: few-shot accuracy on 11 datasets and their average",
              (ZERO_SHOT, COOP, CLIP_ADAPTER, TIP_ADAPTER_F, TASKRES, TASKRES_STAR), "datasets",
              datasets=BENCHMARKS, plot=True),
    PaperItem("table1", "Table 1: domain generalisation (16-shot ImageNet source)",
              (ZERO_SHOT, LINEAR_PROBE, COOP, TASKRES, TASKRES_STAR), "dg", shots=(16,),
              backbones=ALL_BACKBONES, dg_targets=DG_TARGETS),
    PaperItem("table2", "Table 2: ablation of the classifier form on ImageNet (alpha 0.5)",
              (Row("t' = t", "taskres_base"), Row("t' = φ(t)", "taskres_adapter"),
               Row("t' = t + α·φ(t)", "taskres_adapter_residual"),
               Row("t' = t + α·x", "taskres")), "shots"),
    PaperItem("table3", "Table 3: regular and enhanced base, average over 11 datasets",
              (Row("Regular base", "taskres_base"), Row("Regular base + TaskRes", "taskres"),
               Row("Enhanced base", "taskres_enhanced_base", enhanced=True),
               Row("Enhanced base + TaskRes", "taskres", enhanced=True)), "shots",
              datasets=BENCHMARKS, average=True),
    PaperItem("table4", "Table 4: the residual on the image or the text side, or both (ImageNet)",
              (Row("TaskRes-I", "taskres_image"), Row("TaskRes-T", "taskres"),
               Row("TaskRes-I&T", "taskres_image_text")), "shots"),
    PaperItem("table5", "Table 5: the residual scale alpha, fixed or learned (ImageNet)",
              tuple(Row(f"α = {a}", "taskres_alpha", (("ALPHA", a),)) for a in TABLE5_ALPHAS)
              + (Row("learnable α", "taskres_learn_alpha"),), "shots"),
    PaperItem("table6", "Table 6: 16-shot ImageNet accuracy across backbones",
              (ZERO_SHOT, COOP, CLIP_ADAPTER, TASKRES, TASKRES_STAR), "backbones", shots=(16,),
              backbones=ALL_BACKBONES),
    PaperItem("fig4", "Fig. 4: relative transfer difficulty against the residual's magnitude",
              (ZERO_SHOT, TASKRES), "residual", datasets=BENCHMARKS, shots=(16,), plot=True),
)}


def get_item(name):
    if name not in ITEMS:
        raise UserError(f"unknown paper item '{name}': choose one of {', '.join(ITEMS)}")
    return ITEMS[name]


def narrowed(item, datasets=None, shots=None, backbones=None, targets=None):
    """The item on other datasets / shots / backbones / DG targets (e.g. the demo data)."""
    changes = {}
    if datasets:
        changes["datasets"] = tuple(datasets)
    if shots:
        changes["shots"] = tuple(int(k) for k in shots)
    if backbones:
        unknown = [b for b in backbones if b not in ALL_BACKBONES]
        if unknown:
            raise UserError(f"BACKBONES: {', '.join(unknown)} unknown; choose from "
                            f"{' '.join(ALL_BACKBONES)}")
        changes["backbones"] = tuple(backbones)
    if targets and item.dg_targets:
        changes["dg_targets"] = tuple(targets)
    return dataclasses.replace(item, **changes)


@dataclass(frozen=True)
class Cell:
    """One run a paper item needs, and where its result is."""
    row: Row
    backbone: str
    dataset: str  # the dataset the run is tested on (a DG target for DG tests)
    shots: int  # the column's shot count (also for zero-shot rows, which run at 0 shots)
    seed: Optional[int]
    run: plan.Run  # the training run (for a DG test: the source run it tests)
    output_dir: str  # where the result is
    dg: bool = False  # a test of `run`'s model on `dataset`


def enhanced_base_dir():
    return os.environ.get(ENHANCED_BASE_DIR_ENV, "") or DEFAULT_ENHANCED_BASE_DIR


def enhanced_base_file(dataset, backbone, shots, folder=None):
    """Where `python -m trainers.enhanced_base` writes the enhanced base of a cell."""
    from trainers.common.dataset_names import dataset_name_of_stem
    from trainers.enhanced_base import enhanced_base_path
    return enhanced_base_path(folder or enhanced_base_dir(), dataset_name_of_stem(dataset),
                              backbone, shots)


def row_settings(row, backbone, dataset, shots, strong_base=None):
    settings = dict(row.settings)
    if backbone != DEFAULT_BACKBONE:
        settings["BACKBONE"] = backbone
    if row.enhanced:
        settings["ENHANCED_BASE"] = enhanced_base_file(dataset, backbone, shots, strong_base)
    return settings


def plan_row(row, backbone, dataset, shots, seeds, output, root, extra=(), strong_base=None):
    """The runs of one row at one (backbone, dataset, shots). An enhanced base not made yet
    still gives the folders its runs will have (for reports), but no runnable arguments."""
    method = plan.get_method(row.method)
    k = shots if method.trains else layout.ZEROSHOT_SHOTS
    settings = row_settings(row, backbone, dataset, k, strong_base)
    if row.enhanced and not osp.isfile(settings["ENHANCED_BASE"]):
        made = settings.pop("ENHANCED_BASE")
        runs = plan.plan_runs(row.method, dataset, k, seeds, output, root, settings, extra)
        values = {**plan.option_values(method, settings), "ENHANCED_BASE": made}
        variant = method.variant(values)
        return [dataclasses.replace(r, variant=variant, args=[], output_dir=layout.run_dir(
            output, dataset, r.trainer, r.cfg, k, r.seed, variant)) for r in runs]
    return plan.plan_runs(row.method, dataset, k, seeds, output, root, settings, extra)


def cells(item, output, seeds=SEEDS, root=None, extra=(), strong_base=None):
    """Every run `item` needs, in table order."""
    root = root or plan.REPO_ROOT  # any folder will do for rendering: it reads no data
    found: List[Cell] = []
    for backbone in item.backbones:
        for row in item.rows:
            for dataset in item.datasets:
                for shots in item.shots:
                    for run in plan_row(row, backbone, dataset, shots, seeds, output, root,
                                        extra, strong_base):
                        found.append(Cell(row, backbone, dataset, shots, run.seed, run,
                                          run.output_dir))
                        for target in item.dg_targets:
                            found.append(Cell(row, backbone, target, shots, run.seed, run,
                                              dg_dir(output, run, target), dg=True))
    return found


def dg_dir(output, run, target):
    """Where the DG test of `run`'s model on `target` goes (a zero-shot row is simply run on
    the target, in the main tree)."""
    if run.eval_only:
        return layout.run_dir(output, target, run.trainer, run.cfg, run.shots, run.seed,
                              run.variant)
    return layout.run_dir(osp.join(output, layout.DG_DIR), target, run.trainer, run.cfg,
                          run.shots, run.seed, run.variant)


def unique_runs(found: Sequence[Cell]):
    """The training (or evaluation-only) runs of the cells, each once, in order."""
    seen = {}
    for cell in found:
        if not cell.dg:
            seen.setdefault(cell.run.output_dir, cell.run)
    return list(seen.values())
