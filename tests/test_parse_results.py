"""parse_results.py on fixture output trees (real files, real subprocesses).

Every expected number is computed here from the values written into the fixture logs.
"""
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

import pytest
from tests.machine_speed import scaled_timeout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
              "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
COOP_CFG = {1: "rn50_ep50", 16: "rn50"}  # the official CoOp configs vary with the shots
COOP_VARIANT = "nctx16_cscFalse_ctpend"


def result_block(acc, macro_f1=None):
    f1 = acc - 1.0 if macro_f1 is None else macro_f1
    return ["=> result", "* total: 1,000", f"* correct: {int(acc * 10):,}",
            f"* accuracy: {acc:.1f}%", f"* error: {100 - acc:.1f}%", f"* macro_f1: {f1:.1f}%"]


def training_log(acc, finished=True, val_acc=12.5):
    """A log shaped like the engine's: config dump, epochs, a val block, then the final test."""
    lines = ["***************", "** Config **", "OPTIM:", "  MAX_EPOCH: 2",
             "epoch [1/2] batch [1/1] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0) acc 50.0 "
             "(50.0) lr 1.0000e-05 eta 0:00:01",
             "Evaluate on the *val* set"] + result_block(val_acc)
    if finished:
        lines += ["Finish training", "Deploy the last-epoch model",
                  "Evaluate on the *test* set"] + result_block(acc) + ["Elapsed: 0:00:02"]
    return "\n".join(lines) + "\n"


def eval_log(acc):
    return "\n".join(["** Arguments **", "eval_only: True", "Evaluate on the *test* set"]
                     + result_block(acc)) + "\n"


def write(path, text, name="log.txt"):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w") as f:
        f.write(text)


def run_parse(*args, check=True):
    proc = subprocess.run([sys.executable, "parse_results.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=scaled_timeout(120))
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def acc_value(dataset_index, shots, seed, offset=0.0):
    """A distinct one-decimal accuracy per run, so means and stds are not trivial."""
    return round(40.0 + 2.0 * dataset_index + shots * 0.9 + seed * 0.7 + (seed % 2) * 0.3
                 + offset, 1)


def coop_dir(root, dataset, shots, seed):
    return os.path.join(root, dataset, "CoOp", f"{COOP_CFG[shots]}_{shots}shots", COOP_VARIANT,
                        f"seed{seed}")


def make_full_grid(root, datasets=BENCHMARKS, shots=(1, 16), seeds=(1, 2, 3)):
    values = {}
    for i, d in enumerate(datasets):
        for k in shots:
            for s in seeds:
                values[(d, k, s)] = acc_value(i, k, s)
                write(coop_dir(root, d, k, s), training_log(values[(d, k, s)]))
    return values


def cell_text(vals):
    return f"{statistics.fmean(vals):.2f} ± {statistics.pstdev(vals):.2f} ({len(vals)})"


def table_row(stdout, first_cell):
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{stdout}")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- reference mode

def test_reference_lines_exactly(tmp_path):
    exp = tmp_path / "exp"
    accs = {1: 61.2, 2: 60.8, 3: 62.3}
    for seed, acc in accs.items():
        write(exp / f"seed{seed}", training_log(acc))
    out = run_parse(exp).stdout.splitlines()
    mean, std = statistics.fmean(accs.values()), statistics.pstdev(accs.values())
    assert out == [f"Parsing files in {exp}"] + [
        f"file: {exp}/seed{s}/log.txt. accuracy: {a:.2f}%. " for s, a in accs.items()
    ] + ["===", f"Summary of directory: {exp}", f"* accuracy: {mean:.2f}% +- {std:.2f}%", "==="]


def test_ci95_keyword_and_natural_seed_order(tmp_path):
    exp = tmp_path / "exp"
    f1 = {1: 55.5, 2: 57.0, 10: 51.0}
    for seed, value in f1.items():
        write(exp / f"seed{seed}", training_log(70.0).replace("* macro_f1: 69.0%",
                                                               f"* macro_f1: {value:.1f}%"))
    out = run_parse(exp, "--ci95", "--keyword", "macro_f1").stdout.splitlines()
    assert [l.split("/")[-2] for l in out if l.startswith("file:")] == ["seed1", "seed2",
                                                                       "seed10"]
    ci = 1.96 * statistics.pstdev(f1.values()) / math.sqrt(3)
    assert f"* macro_f1: {statistics.fmean(f1.values()):.2f}% +- {ci:.2f}%" in out
    err = run_parse(exp, "--keyword", "error").stdout
    assert "* error: 30.00% +- 0.00%" in err


def test_takes_last_value_after_finish_and_newest_finished_log(tmp_path):
    exp = tmp_path / "exp"
    # seed1: a crashed first attempt (log.txt) and the resumed run's rotated log.
    write(exp / "seed1", training_log(0.0, finished=False))
    write(exp / "seed1", training_log(64.4), name="log.txt-2024-05-01-10-00-00")
    # seed2: two finished logs: the newer one wins; an interrupted newest one is passed over.
    write(exp / "seed2", training_log(50.0))
    write(exp / "seed2", training_log(66.6), name="log.txt-2024-05-01-10-00-00")
    write(exp / "seed2", training_log(0.0, finished=False), name="log.txt-2024-05-01-10-00-00-1")
    proc = run_parse(exp)
    assert f"file: {exp}/seed1/log.txt-2024-05-01-10-00-00. accuracy: 64.40%. " in proc.stdout
    assert f"file: {exp}/seed2/log.txt-2024-05-01-10-00-00. accuracy: 66.60%. " in proc.stdout
    assert "log.txt-2024-05-01-10-00-00-1" in proc.stderr  # the skipped newer log is named
    assert "* accuracy: 65.50% +- 1.10%" in proc.stdout  # val result 12.5 never counted


def test_result_json_is_preferred_over_the_log(tmp_path):
    exp = tmp_path / "exp"
    write(exp / "seed1", training_log(10.0))
    write(exp / "seed1", json.dumps({"accuracy": 77.777, "error_rate": 22.223,
                                     "macro_f1": 70.0}), name="result.json")
    out = run_parse(exp).stdout
    assert f"file: {exp}/seed1/result.json. accuracy: 77.78%. " in out
    assert "* error: 22.22% +- 0.00%" in run_parse(exp, "--keyword", "error").stdout


def test_unfinished_run_is_reported_not_counted(tmp_path):
    exp = tmp_path / "exp"
    write(exp / "seed1", training_log(60.0))
    write(exp / "seed2", training_log(0.0, finished=False))
    proc = run_parse(exp)
    assert "* accuracy: 60.00% +- 0.00%" in proc.stdout
    assert f"left out {exp}/seed2" in proc.stderr
    write(exp / "seed1", training_log(0.0, finished=False))
    proc = run_parse(exp, check=False)
    assert proc.returncode == 1 and "no finished run" in proc.stderr and str(exp) in proc.stderr


def test_eval_only_logs_need_test_log(tmp_path):
    exp = tmp_path / "eval"
    write(exp / "seed1", eval_log(58.1))
    write(exp / "seed2", eval_log(58.4))
    assert run_parse(exp, check=False).returncode == 1  # no 'Finish training' in these logs
    assert "* accuracy: 58.25% +- 0.15%" in run_parse(exp, "--test-log").stdout


def test_multi_exp_averages_the_experiment_means(tmp_path):
    root = tmp_path / "multi"
    exps = {"exp-1": [60.0, 62.0], "exp-2": [70.0, 71.0, 75.0]}
    for name, accs in exps.items():
        for seed, acc in enumerate(accs, 1):
            write(root / name / f"seed{seed}", training_log(acc))
    out = run_parse(root, "--multi-exp").stdout.splitlines()
    assert out.count("===") == 4
    average = statistics.fmean([statistics.fmean(accs) for accs in exps.values()])
    assert out[-2:] == ["Average performance", f"* accuracy: {average:.2f}%"]


def test_table_flags_need_a_table_mode(tmp_path):
    proc = run_parse(tmp_path, "--csv", tmp_path / "x.csv", check=False)
    assert proc.returncode == 2 and "--csv" in proc.stderr


# ---------------------------------------------------------------- table mode

def test_full_grid_table_and_csv(tmp_path):
    root = tmp_path / "output"
    values = make_full_grid(root)
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    proc = run_parse(root, "--table", "--markdown", md, "--csv", csv_path)
    out = proc.stdout
    assert out == md.read_text()
    assert "## CoOp: " in out  # ep50 (1 shot) and rn50 (16) merged under the declared label
    dtd = [values[("dtd", k, s)] for k in (1, 16) for s in (1, 2, 3)]
    assert table_row(out, "DTD")[1:] == [cell_text(dtd[:3]), cell_text(dtd[3:])]

    per_seed_avg = {k: [statistics.fmean(values[(d, k, s)] for d in BENCHMARKS) for s in (1, 2, 3)]
                    for k in (1, 16)}
    avg_row = table_row(out, "Average (11 datasets)")
    for col, k in enumerate((1, 16), 1):
        mean = statistics.fmean(statistics.fmean(values[(d, k, s)] for s in (1, 2, 3))
                                for d in BENCHMARKS)
        assert avg_row[col] == f"{mean:.2f} ± {statistics.pstdev(per_seed_avg[k]):.2f} (11 datasets)"
    assert "Incomplete" not in out

    rows = read_csv(csv_path)
    assert len(rows) == 11 * 2 + 2
    row = next(r for r in rows if r["dataset"] == "eurosat" and r["shots"] == "16")
    vals = [values[("eurosat", 16, s)] for s in (1, 2, 3)]
    assert float(row["mean"]) == pytest.approx(statistics.fmean(vals), abs=1e-4)
    assert float(row["std"]) == pytest.approx(statistics.pstdev(vals), abs=1e-4)
    assert [float(row[f"seed_{s}"]) for s in (1, 2, 3)] == vals
    assert (row["n"], row["expected"], row["complete"]) == ("3", "3", "1")
    avg = next(r for r in rows if r["dataset"] == "average" and r["shots"] == "1")
    assert float(avg["std"]) == pytest.approx(statistics.pstdev(per_seed_avg[1]), abs=1e-4)


def test_incomplete_grid_is_marked_and_not_averaged(tmp_path):
    root = tmp_path / "output"
    values = make_full_grid(root)
    shutil.rmtree(coop_dir(root, "dtd", 16, 3))  # never ran
    write(coop_dir(root, "eurosat", 16, 2), training_log(0.0, finished=False))  # crashed
    shutil.rmtree(os.path.dirname(os.path.dirname(coop_dir(root, "ucf101", 1, 1))))  # a cell

    out = run_parse(root, "--table").stdout
    dtd16 = [values[("dtd", 16, s)] for s in (1, 2)]
    mean, std = statistics.fmean(dtd16), statistics.pstdev(dtd16)
    assert table_row(out, "DTD")[2] == f"{mean:.2f} ± {std:.2f} (2/3)"
    assert table_row(out, "UCF101")[1] == "—"
    assert table_row(out, "Average (11 datasets)")[1:] == ["incomplete (10/11)",
                                                          "incomplete (9/11)"]
    assert "- DTD, 16 shots: seed 3 missing" in out
    assert f"- EuroSAT, 16 shots: seed 2 unfinished ({coop_dir(root, 'eurosat', 16, 2)})" in out
    assert "- UCF101, 1 shot: no runs" in out

    csv_path = tmp_path / "p.csv"
    out = run_parse(root, "--table", "--allow-partial", "--csv", csv_path).stdout
    means16 = [statistics.fmean(values[(d, 16, s)] for s in (1, 2, 3)) for d in BENCHMARKS
               if d not in ("dtd", "eurosat")]
    means16.append(mean)
    means16.append(statistics.fmean(values[("eurosat", 16, s)] for s in (1, 3)))
    expected = statistics.fmean(means16)
    assert table_row(out, "Average (11 datasets)")[2] == \
        f"{expected:.2f} (partial: 11 averaged, 9/11 complete)"
    avg = next(r for r in read_csv(csv_path) if r["dataset"] == "average" and r["shots"] == "16")
    assert float(avg["mean"]) == pytest.approx(expected, abs=1e-4)
    assert (avg["complete"], avg["std"]) == ("0", "")


def test_per_seed_values_and_left_out_seeds(tmp_path):
    root = tmp_path / "output"
    values = make_full_grid(root, datasets=["dtd"], shots=(1,), seeds=(1, 2, 3, 4))
    out = run_parse(root, "--table", "--per-seed", "--datasets", "dtd").stdout
    assert table_row(out, "DTD")[1] == cell_text([values[("dtd", 1, s)] for s in (1, 2, 3)])
    assert "seed 4 left out, not in --seeds" in out
    # the per-seed table lists every expected seed's value next to the cell
    rows = [l for l in out.splitlines() if l.startswith("| DTD ") and "| 1 " in l]
    assert len(rows) == 1 and all(f"{values[('dtd', 1, s)]:.2f}" in rows[0] for s in (1, 2, 3))
    out4 = run_parse(root, "--table", "--datasets", "dtd", "--seeds", "1", "2", "3", "4").stdout
    assert table_row(out4, "DTD")[1] == cell_text([values[("dtd", 1, s)] for s in (1, 2, 3, 4)])
    assert table_row(out4, "Average (1 datasets)")[1].endswith("(1 dataset)")


def test_zero_shot_and_split_config_families(tmp_path):
    root = tmp_path / "output"
    write(root / "dtd" / "ZeroshotCLIP" / "rn50_0shots", eval_log(42.2))
    # an ablation: two CoOp schedules at the same shots are not merged into one method
    write(root / "dtd" / "CoOp" / "rn50_ep50_16shots" / "seed1", training_log(60.0))
    write(root / "dtd" / "CoOp" / "rn50_16shots" / "seed1", training_log(63.0))
    proc = run_parse(root, "--table", "--datasets", "dtd", "--seeds", "1")
    assert "## Zero-shot CLIP: accuracy (%), single runs" in proc.stdout
    assert "| DTD " in proc.stdout and "42.20" in proc.stdout
    assert "## CoOp [rn50_ep50]: " in proc.stdout and "## CoOp: " in proc.stdout
    assert "several configs" in proc.stderr


def test_plot_writes_a_png(tmp_path):
    root = tmp_path / "output"
    make_full_grid(root, datasets=["dtd", "eurosat"])
    png = tmp_path / "fewshot.png"
    run_parse(root, "--table", "--plot", png, "--published", "--allow-partial")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_base_to_new_table(tmp_path):
    b2n = tmp_path / "output" / "base2new"
    base, new = {}, {}
    for i, d in enumerate(["dtd", "eurosat"]):
        for s in (1, 2, 3):
            base[(d, s)] = acc_value(i, 16, s, offset=20)
            new[(d, s)] = acc_value(i, 16, s, offset=5)
            run = os.path.join(d, "CoOp", "rn50_16shots", f"seed{s}")
            write(b2n / "train_base" / run, training_log(base[(d, s)]))
            write(b2n / "test_new" / run, eval_log(new[(d, s)]))
    csv_path = tmp_path / "b2n.csv"
    out = run_parse(tmp_path / "output", "--base2new", "--datasets", "dtd", "eurosat",
                    "--csv", csv_path).stdout

    def hm(b, n):
        return 2 * b * n / (b + n)

    b = statistics.fmean(base[("dtd", s)] for s in (1, 2, 3))
    n = statistics.fmean(new[("dtd", s)] for s in (1, 2, 3))
    # HM of the seed-mean base and new, then ± the spread of the per-seed HMs
    assert table_row(out, "DTD")[3].split(" ± ")[0] == f"{hm(b, n):.2f}"
    base_avg = statistics.fmean(base.values())
    new_avg = statistics.fmean(new.values())
    assert table_row(out, "Average (2 datasets)")[3] == f"{hm(base_avg, new_avg):.2f}"
    rows = read_csv(csv_path)
    hm_row = next(r for r in rows if r["dataset"] == "average" and r["quantity"] == "hm")
    assert float(hm_row["mean"]) == pytest.approx(hm(base_avg, new_avg), abs=1e-4)


def test_dg_table(tmp_path):
    root = tmp_path / "output"
    src = {s: 60.0 + s for s in (1, 2, 3)}
    for s, acc in src.items():
        write(root / "imagenet" / "TaskRes" / "adam_lr2e-4_B256_ep200_16shots" / f"seed{s}",
              training_log(acc))
    targets = {"imagenetv2": 50.0, "imagenet_sketch": 35.0, "imagenet_a": 20.0,
               "imagenet_r": 58.0}
    for t, acc in targets.items():
        for s in (1, 2, 3):
            write(root / "dg" / t / "TaskRes" / "adam_lr2e-4_B256_ep200_16shots" / f"seed{s}",
                  eval_log(acc + s * 0.1))
    out = run_parse(root, "--dg").stdout
    row = table_row(out, "TaskRes")
    assert row[1] == "16"
    assert row[2] == cell_text(list(src.values()))
    assert row[3] == cell_text([50.1, 50.2, 50.3])
    target_mean = statistics.fmean(acc + 0.2 for acc in targets.values())
    assert row[7].startswith(f"{target_mean:.2f} ± ") and row[7].endswith("(4 datasets)")


def test_runs_frame_one_row_per_run(tmp_path):
    from experiments.collect import runs_frame
    from trainers.common.experiment import load_methods
    load_methods([])
    values = make_full_grid(tmp_path, datasets=["dtd", "eurosat"], shots=(1,), seeds=(1, 2))
    write(coop_dir(tmp_path, "dtd", 16, 1), training_log(0.0, finished=False))
    record = {"accuracy": 77.5, "backbone": "RN50", "weights": "random", "num_classes": 47,
              "trainable_params": 8192, "pipeline": "cached", "method": "coop",
              "request": {"method": "coop", "dataset": "dtd", "trainer": "CoOp",
                          "cfg": "rn50_ep50", "shots": 1, "variant": COOP_VARIANT, "seed": 2}}
    write(coop_dir(tmp_path, "dtd", 1, 2), json.dumps(record), name="result.json")
    frame = runs_frame(str(tmp_path))
    assert len(frame) == 5 and set(frame.label) == {"CoOp"}
    done = frame[frame.finished].set_index(["dataset", "seed"])
    assert done.accuracy.to_dict() == {("dtd", 1): values[("dtd", 1, 1)], ("dtd", 2): 77.5,
                                       ("eurosat", 1): values[("eurosat", 1, 1)],
                                       ("eurosat", 2): values[("eurosat", 1, 2)]}
    from_record = done.loc[("dtd", 2)]
    assert (from_record.backbone, from_record.num_classes, from_record.pipeline,
            from_record.method, from_record.cfg) == ("RN50", 47, "cached", "coop", "rn50_ep50")
    unfinished = frame[~frame.finished].iloc[0]
    assert (unfinished.shots, unfinished.seed, math.isnan(unfinished.accuracy)) == (16, 1, True)


def test_fast_runs_get_their_own_row_label(tmp_path):
    """A cell never averages fast-pipeline runs with exact ones (reference and
    exact-cached-eval give identical results, so they share a label)."""
    root = tmp_path / "output"
    pipelines = {1: "reference", 2: "exact-cached-eval", 3: "fast"}
    for seed, name in pipelines.items():
        record = {"accuracy": 60.0 + seed, "pipeline": {"name": name, "views": 10}}
        write(coop_dir(root, "dtd", 16, seed), json.dumps(record), name="result.json")
    out = run_parse(root, "--table", "--datasets", "dtd", "--shots", "16", "--seeds", "1", "2",
                    "3", "--allow-partial").stdout
    assert "## CoOp: " in out and "## CoOp [fast]: " in out
    exact, fast = out.split("## CoOp [fast]: ")  # the exact table comes first
    assert "| 61.50 ± 0.50 (2/3) " in exact and "63.00" not in exact
    assert "| 63.00 (1/3) " in fast and "61.50" not in fast


def test_test_log_reads_a_zero_shot_run_folder(tmp_path):
    run = tmp_path / "output" / "dtd" / "ZeroshotCLIP" / "rn50_0shots"
    write(run, eval_log(42.2))
    out = run_parse(run, "--test-log").stdout
    assert f"file: {run}/log.txt. accuracy: 42.20%. " in out
    assert "* accuracy: 42.20% +- 0.00%" in out
