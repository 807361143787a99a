#!/usr/bin/env python
"""Aggregate the results of few-shot CLIP runs.

Reference mode (the reference aggregator's interface and output lines):

    python parse_results.py output/dtd/CoOp/rn50_16shots/nctx16_cscFalse_ctpend
    python parse_results.py DIR [--ci95] [--test-log] [--multi-exp] [--keyword macro_f1]

Table modes over a whole output tree (unfinished runs are reported, never counted):

    python parse_results.py output --table [--per-seed] [--allow-partial] [--cost] [--vs-published]
           [--markdown results.md] [--csv results.csv] [--plot fewshot.png [--published]]
    python parse_results.py output/base2new --base2new
    python parse_results.py output --dg
    python parse_results.py output --xd
    python parse_results.py output --paper table2   a TaskRes paper item, under output/paper/
"""
import argparse
import os.path as osp
import statistics
import sys

from dassl.utils.errors import run_cli
import pandas as pd

from experiments import layout, tables, transfer_tables
from experiments.benchmarks import BENCHMARKS, DG_SOURCE, DG_TARGETS, SEEDS
from experiments.collect import (END_OF_TRAINING, RESULT_BLOCK, ResultsError, collect_runs,
                                  read_run_result)
from trainers.common.experiment import load_methods

XD_TARGETS = tuple(d for d in BENCHMARKS if d != DG_SOURCE)  # cross-dataset: ImageNet -> the other 10

TABLE_ONLY = ("seeds", "shots", "datasets", "allow_partial", "per_seed", "markdown", "csv",
              "plot", "published", "backbones", "targets", "cost", "vs_published")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="experiment folder (reference mode) or output root")
    parser.add_argument("--ci95", action="store_true",
                        help="95%% confidence half-width 1.96*std/sqrt(n) instead of std")
    parser.add_argument("--test-log", action="store_true",
                        help="eval-only runs: read the metric after '=> result'")
    parser.add_argument("--multi-exp", action="store_true",
                        help="reference mode: DIR holds several experiments; average them")
    parser.add_argument("--keyword", default="accuracy",
                        help="metric to read: accuracy (default), macro_f1, error")

    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--table", action="store_true",
                      help="a table per method of DIR/<dataset>/<Trainer>/<cfg>_<K>shots/...")
    mode.add_argument("--base2new", action="store_true",
                      help="base/new/HM of DIR/train_base, DIR/test_new (DIR: output[/base2new])")
    mode.add_argument("--dg", action="store_true",
                      help="domain generalisation: DIR/imagenet and DIR/dg/<target>/...")
    mode.add_argument("--xd", action="store_true",
                      help="cross-dataset: DIR/imagenet and DIR/xd/<target>/..., published numbers beside")
    mode.add_argument("--paper", metavar="ITEM", default=None,
                      help="a TaskRes paper item (fig1 ... table6) run by scripts/paper/ITEM.sh")

    opts = parser.add_argument_group("table options (with --table, --base2new or --dg)")
    opts.add_argument("--seeds", type=int, nargs="+", default=None,
                      help=f"seeds a complete cell has (default: {' '.join(map(str, SEEDS))})")
    opts.add_argument("--shots", type=int, nargs="+", default=None,
                      help="shot counts to show (default: those found)")
    opts.add_argument("--datasets", nargs="+", default=None,
                      help="datasets to show and average (default: the 11 benchmarks or 4 targets)")
    opts.add_argument("--allow-partial", action="store_true",
                      help="average an incomplete grid too (marked 'partial')")
    opts.add_argument("--per-seed", action="store_true",
                      help="also list every seed's value (--table)")
    opts.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    opts.add_argument("--csv", metavar="FILE", help="write one tidy CSV row per cell")
    opts.add_argument("--plot", metavar="PNG", help="accuracy-versus-shots figure (--table)")
    opts.add_argument("--published", action="store_true",
                      help="add the published numbers to --plot as dashed lines")
    opts.add_argument("--cost", action="store_true",
                      help="--table: also the cost of the runs (trainable parameters, wall time, peak memory, device)")
    opts.add_argument("--vs-published", action="store_true",
                      help="--table: ours beside the published numbers of the same method and backbone")
    opts.add_argument("--backbones", nargs="+", default=None,
                      help="--paper: the backbones of a narrowed grid (BACKBONES of its script)")
    opts.add_argument("--targets", nargs="+", default=None,
                      help="--paper: the DG targets of a narrowed grid (TARGETS of its script)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="a file declaring more methods (their table labels); also $PLUGINS")
    return parser


def check_args(parser, args):
    table_mode = args.table or args.base2new or args.dg or args.xd or args.paper
    if (args.backbones or args.targets) and not args.paper:
        parser.error("--backbones and --targets go with --paper")
    if args.paper and (args.per_seed or args.published or args.ci95):
        parser.error("--per-seed, --published and --ci95 do not apply to --paper")
    if not table_mode:
        given = [f"--{name.replace('_', '-')}" for name in TABLE_ONLY
                 if getattr(args, name) not in (None, False)]
        if given:
            parser.error(f"{', '.join(given)} need(s) --table, --base2new, --dg or --paper")
        return
    if args.multi_exp:
        parser.error("--multi-exp is for reference mode; drop it or drop the table mode")
    if (args.per_seed or args.plot or args.cost or args.vs_published) and not (args.table or args.paper):
        parser.error("--per-seed, --plot, --cost and --vs-published go with --table")
    if args.published and not args.plot:
        parser.error("--published adds reference lines to --plot PNG; give --plot too")
    if args.plot and not args.plot.lower().endswith(".png"):
        parser.error(f"--plot {args.plot}: the figure is written as PNG; name it *.png")


def summarize_experiment(directory, keyword, signal, ci95=False):
    """Reference mode: print the per-run values and the summary of one experiment folder
    (its seed folders, or itself for a seedless run); return the mean."""
    if not osp.isdir(directory):
        raise ResultsError(f"{directory} is not a folder")
    print(f"Parsing files in {directory}")
    runs = layout.list_subdirs(directory) or ([""] if layout.has_run_files(directory) else [])
    values = []
    for name in runs:
        path = osp.join(directory, name) if name else directory
        result = read_run_result(path, keyword, signal)
        if result is None:
            why = ("it holds no log.txt but sub-folders: is DIR one level too high?"
                   if not layout.has_run_files(path) and layout.list_subdirs(path)
                   else f"no '{keyword}' result after '{signal}' (run unfinished or crashed?)")
            print(f"[parse_results] left out {path}: {why}", file=sys.stderr)
            continue
        print(f"file: {result.source}. {keyword}: {result.value:.2f}%. ")
        values.append(result.value)
    if not values:
        raise ResultsError(f"no finished run with a '{keyword}' result in {directory} (looked "
                           f"for result.json or a '{signal}' line in each sub-folder's log.txt)")
    spread = tables.spread_of(statistics.pstdev(values), len(values), ci95)
    print(f"===\nSummary of directory: {directory}")
    print(f"* {keyword}: {statistics.fmean(values):.2f}% +- {spread:.2f}%\n===")
    return statistics.fmean(values)


def summarize_experiments(directory, keyword, signal, ci95=False):
    """`--multi-exp`: summarize every experiment folder of `directory`, then their average."""
    if not osp.isdir(directory):
        raise ResultsError(f"{directory} is not a folder")
    experiments = layout.list_subdirs(directory)
    if not experiments:
        raise ResultsError(f"no experiment folders in {directory}")
    means = [summarize_experiment(osp.join(directory, name), keyword, signal, ci95)
             for name in experiments]
    print(f"Average performance\n* {keyword}: {statistics.fmean(means):.2f}%")


def _require_runs(count, where):
    if not count:
        raise ResultsError(f"no run folders found in {where} (expected "
                           f"<dataset>/<Trainer>/<cfg>_<K>shots/[<variant>/]seed<S>/ below it)")


def run_table(args, seeds):
    """(Markdown, tidy CSV frame) of the few-shot tables; also the plot when asked for."""
    for name, flags in (("eval", "--table --test-log"), ("dg", "--dg"), ("xd", "--xd"),
                        ("base2new", "--base2new")):
        if osp.isdir(osp.join(args.directory, name)):
            print(f"[parse_results] {osp.join(args.directory, name)} is not part of this table "
                  f"(read it with {flags})", file=sys.stderr)
    found = tables.fewshot_tables(args.directory, args.datasets, seeds, args.shots, args.keyword,
                                  args.test_log, args.allow_partial, args.ci95)
    _require_runs(len(found.cells), args.directory)
    if args.plot:
        from experiments.plots import plot_fewshot  # matplotlib only when a plot is asked for
        plot_fewshot(found, args.plot, args.keyword, args.published)
        print(f"[parse_results] wrote {args.plot}", file=sys.stderr)
    text = tables.fewshot_markdown(found, args.keyword, args.ci95, args.per_seed)
    if args.cost:
        text += "\n# Cost\n\n" + tables.cost_markdown(found)
    if args.vs_published:
        text += "\n# Published vs reproduced\n\n" + tables.vs_published_markdown(found)
    return text, tables.fewshot_csv(found, args.keyword)


def run_base2new(args, seeds):
    """Base/new/HM per dataset with the published numbers; then the cross-dataset table when
    the output root beside base2new/ holds xd/."""
    root = args.directory
    if not osp.isdir(osp.join(root, layout.TRAIN_BASE_DIR)) and \
            osp.isdir(osp.join(root, layout.BASE2NEW_DIR)):
        root = osp.join(root, layout.BASE2NEW_DIR)
    for path in (osp.join(root, layout.TRAIN_BASE_DIR), osp.join(root, layout.TEST_NEW_DIR)):
        if not osp.isdir(path):
            raise ResultsError(f"{path} is missing: --base2new reads <DIR>/{layout.TRAIN_BASE_DIR} and "
                               f"<DIR>/{layout.TEST_NEW_DIR} (written by scripts/base2new.sh)")
    try:
        text, frame = transfer_tables.base2new_report(root, args.datasets, seeds, args.keyword, args.allow_partial,
                                             args.ci95, args.shots)
    except ValueError:
        _require_runs(0, root)
    parent = osp.dirname(osp.abspath(root))
    if osp.isdir(osp.join(parent, layout.XD_DIR)):
        xd_text, xd_frame = _xd_table(parent, seeds, args)
        text, frame = text + "\n" + xd_text, pd.concat([frame, xd_frame])
    return text, frame


def _xd_table(root, seeds, args):
    """(Markdown, CSV) of the ImageNet models tested on the other 10 benchmarks, <root>/xd/..."""
    targets = XD_TARGETS
    target_root = osp.join(root, layout.XD_DIR)
    if not osp.isdir(target_root):
        raise ResultsError(f"{target_root} is missing: --xd reads the tests of the ImageNet models from "
                           f"<DIR>/{layout.XD_DIR}/<target>/... (written by scripts/xd.sh METHOD)")
    source = collect_runs(root, args.keyword, False, [DG_SOURCE])
    target = collect_runs(target_root, args.keyword, True, targets)
    _require_runs(len(target), target_root)
    if args.shots:
        source = source[source.shots.isin(args.shots)]
        target = target[target.shots.isin(args.shots)]
    cells = transfer_tables.dg_cells(source, target, DG_SOURCE, targets, seeds, args.keyword,
                                     args.allow_partial, args.ci95)
    trainers = transfer_tables.trainers_by_label(source, target)
    return (transfer_tables.xd_markdown(cells, DG_SOURCE, targets, args.keyword, trainers),
            transfer_tables.dg_csv(cells, args.keyword).assign(table="xd"))


def run_xd(args, seeds):
    return _xd_table(args.directory, seeds, args)


def run_dg(args, seeds):
    targets = args.datasets or DG_TARGETS
    dg_root = osp.join(args.directory, layout.DG_DIR)
    if not osp.isdir(dg_root):
        raise ResultsError(f"{dg_root} is missing: --dg reads the DG evaluations from "
                           f"<DIR>/{layout.DG_DIR}/<target>/... (written by scripts/dg.sh METHOD)")
    source = collect_runs(args.directory, args.keyword, False, [DG_SOURCE])
    target = collect_runs(dg_root, args.keyword, True, targets)
    _require_runs(len(target), dg_root)
    if args.shots:
        source = source[source.shots.isin(args.shots)]
        target = target[target.shots.isin(args.shots)]
    dg = transfer_tables.dg_cells(source, target, DG_SOURCE, targets, seeds, args.keyword,
                                  args.allow_partial, args.ci95)
    return transfer_tables.dg_markdown(dg, DG_SOURCE, targets, args.keyword), transfer_tables.dg_csv(dg, args.keyword)


TABLE_MODES = {"table": run_table, "base2new": run_base2new, "dg": run_dg, "xd": run_xd}


def emit(args, text, csv_frame):
    print(text, end="")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
        print(f"[parse_results] wrote {args.markdown}", file=sys.stderr)
    if args.csv:
        tables.write_csv(args.csv, csv_frame, args.ci95)
        print(f"[parse_results] wrote {args.csv}", file=sys.stderr)


def run_paper(args):
    from experiments.paper_render import render_item
    text, written = render_item(args.directory, args.paper, args.datasets, args.shots,
                                args.seeds, args.backbones, args.targets, args.allow_partial,
                                args.markdown, args.csv, args.plot)
    print(text, end="")
    for path in written:
        print(f"[parse_results] wrote {path}", file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.table or args.base2new or args.dg or args.xd or args.paper:  # TABLE_MODES or --paper
        load_methods(args.plugin)  # table labels; slow (imports torch), so only for tables
    seeds = tuple(args.seeds or SEEDS)
    if args.paper:  # a missing run is a user error (exit 2) naming the command that makes it
        return run_cli(run_paper, args)
    mode = next((name for name in TABLE_MODES if getattr(args, name)), None)
    try:
        if mode:
            emit(args, *TABLE_MODES[mode](args, seeds))
        else:
            signal = RESULT_BLOCK if args.test_log else END_OF_TRAINING
            summarize = summarize_experiments if args.multi_exp else summarize_experiment
            summarize(args.directory, args.keyword, signal, args.ci95)
    except ResultsError as error:
        print(f"parse_results.py: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
