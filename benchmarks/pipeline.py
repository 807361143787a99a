"""The exact training pipeline against the reference pipeline, side by side in one run.

    python -m benchmarks.pipeline                       # CPU: small CLIP (64 px), a few minutes
    python -m benchmarks.pipeline --device cuda --arch RN50 ViT-B/16 --epochs 200 --workers 8

- exact: the default (persistent loader workers reseeded every epoch as fresh ones, training
  images decoded once into the decoded-image store, test features cached exactly);
- reference: workers restarted every epoch, every image decoded from its file every epoch,
  nothing cached (DATALOADER.PERSISTENT_WORKERS False, DATALOADER.IMAGE_STORE.MODE off,
  TRAIN.FEATURE_CACHE.ENABLED False).

For TaskRes, CoOp and CLIP-Adapter at 16 shots it trains both (same data, seed and epochs),
asserts the two runs bit-identical (every step's loss line, the final metrics, sha256 of the
trained weights), and prints:
1. per run: wall time, time per epoch, the training loop's own data wait (time the step waited
   for its batch: loading + augmentation as the step sees it) and its share of the epoch, and
   encoder passes;
2. where an epoch's time goes, from components timed in isolation in the main process (per
   image: decode from file, read from the store, augmentation; per batch: host-to-device copy,
   image-encoder forward, the rest of the training step), scaled to one epoch; and the
   encoder limit: encoder-only time of the run's training passes against the run's training time;
3. parallel runs: N exact TaskRes runs (train.py processes) at once, the cores shared out as
   the launchers do (dassl.utils.threads.thread_env), against the same runs one after another;
4. the full TaskRes table (11 datasets x 5 shot counts x 3 seeds, official configs) projected
   from this run's cost per encoder pass (whole run included, as the README projects it):
   only meaningful with --device cuda and --arch RN50; on CPU it is printed for the method only.

Data and CLIP as benchmarks/speed.py: synthetic gratings, random-weight CLIP with calibrated
BatchNorm statistics (speed does not depend on the weights).
"""
import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from tabulate import tabulate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.speed import SMALL_CLIP, TINY_CLIP, clip_options, weights_digest, write_gratings  # noqa: E402

METHODS = {  # official configs; MAX_EPOCH set per run, fp32 on CPU (fp16 has no CPU kernels)
    "TaskRes": ("TaskRes/adam_lr2e-3_B256_ep200.yaml", ["TRAINER.TaskRes.RESIDUAL_SCALE", "0.5"]),
    "CoOp": ("CoOp/rn50.yaml", []),
    "CLIP_Adapter": ("CLIP_Adapter/rn50.yaml", []),
}
REFERENCE = ["DATALOADER.PERSISTENT_WORKERS", "False", "DATALOADER.IMAGE_STORE.MODE", "off",
             "TRAIN.FEATURE_CACHE.ENABLED", "False"]
STEP = re.compile(r"epoch \[(\d+)/\d+\] batch \[\d+/\d+\] time ([\d.]+) \([\d.]+\) data ([\d.]+) \([\d.]+\)"
                  r" (loss \S+ \(\S+\) acc \S+ \(\S+\)) lr (\S+)")


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


class Bench:
    def __init__(self, args, tmp, arch):
        self.args, self.tmp, self.arch = args, tmp, arch
        self.data_root = os.path.join(tmp, "data")
        if not os.path.isdir(os.path.join(self.data_root, "gratings")):
            write_gratings(os.path.join(self.data_root, "gratings"), args.classes, args.per_class, args.image_size)
        calibration = os.path.join(tmp, f"calibration-{arch.replace('/', '_')}")
        self.clip_opts, _ = clip_options(arch, tmp, write_gratings(calibration, args.classes, 4, args.image_size, 1))
        self.n = 0

    def argv(self, method, pipeline, name, seed=1):
        config, opts = METHODS[method]
        extra = REFERENCE if pipeline == "reference" else [
            "DATALOADER.IMAGE_STORE.ROOT", os.path.join(self.tmp, "store"),
            "TRAIN.FEATURE_CACHE.ROOT", os.path.join(self.tmp, "features", name)]
        prec = [] if self.args.device == "cuda" else ["TRAINER.TaskRes.PREC", "fp32", "TRAINER.COOP.PREC", "fp32"]
        return ["--root", self.data_root, "--seed", str(seed), "--trainer", method,
                "--output-dir", os.path.join(self.tmp, "runs", name),
                "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "image_folder.yaml"),
                "--config-file", os.path.join(REPO, "configs", "trainers", config),
                "DATASET.IMAGE_FOLDER.DIR", "gratings", "DATASET.IMAGE_FOLDER.TRAIN_FRACTION", "0.5",
                "DATASET.IMAGE_FOLDER.VAL_FRACTION", "0.1", "DATASET.NUM_SHOTS", str(self.args.shots),
                "OPTIM.MAX_EPOCH", str(self.args.epochs), "DATALOADER.NUM_WORKERS", str(self.args.workers),
                "TRAIN.PRINT_FREQ", "1", "USE_CUDA", str(self.args.device == "cuda"),
                *self.clip_opts, *opts, *prec, *extra]

    def run(self, method, pipeline):
        """Train and test one model in this process; its log parsed into per-epoch times."""
        import train
        from dassl.engine import build_trainer
        from dassl.utils import set_random_seed

        self.n += 1
        name = f"{self.n:02d}-{self.arch.replace('/', '_')}-{method}-{pipeline}"
        log = os.path.join(self.tmp, "logs", name + ".txt")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            start = time.perf_counter()
            cfg = train.setup_cfg(train.build_parser().parse_args(self.argv(method, pipeline, name)))
            set_random_seed(cfg.SEED)
            trainer = build_trainer(cfg)
            built = time.perf_counter()
            trainer.train()
            sync(self.args.device)
            wall = time.perf_counter() - start
        text = open(log).read()
        steps = STEP.findall(text)
        epochs = {}
        for epoch, batch_time, data_time, *_ in steps:
            e = epochs.setdefault(int(epoch), [0.0, 0.0])
            e[0] += float(batch_time)
            e[1] += float(data_time)
        epoch_s = np.mean([e[0] for e in epochs.values()])
        data_s = np.mean([e[1] for e in epochs.values()])
        return dict(method=method, pipeline=pipeline, wall_s=wall, build_s=built - start, epoch_s=epoch_s,
                    data_s=data_s, train_s=sum(e[0] for e in epochs.values()), passes=trainer.image_encoder_forwards,
                    train_passes=len(trainer.dm.dataset.train_x) * self.args.epochs,
                    steps=[(e, loss, lr) for e, _, _, loss, lr in steps], metrics=dict(trainer.last_results),
                    weights=weights_digest(trainer), trainer=trainer, log=log,
                    prefetched=getattr(trainer.train_loader_x, "predicted_epochs", None))


def time_per(fn, items, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return (time.perf_counter() - start) / (repeat * max(1, len(items)))


def components(trainer, device):
    """Seconds per image (decode, store read, augmentation) and per training batch
    (host-to-device, encoder forward, rest of the step), timed in the main process."""
    from dassl.data.data_manager import read_image
    dm = trainer.dm
    items = dm.dataset.train_x
    store = dm.train_store
    if store is not None:
        store.fill()
    decode = time_per(lambda item: read_image(item.impath), items)
    stored = time_per(lambda i: store.image(i), range(len(items))) if store is not None else float("nan")
    images = [read_image(item.impath) for item in items]
    augment = time_per(dm.tfm_train, images)
    batch_size = min(trainer.cfg.DATALOADER.TRAIN_X.BATCH_SIZE, len(items))
    batch = torch.stack([dm.tfm_train(img) for img in images[:batch_size]])
    labels = torch.tensor([item.label for item in items[:batch_size]])
    if device == "cuda":
        batch = batch.pin_memory()
    h2d = time_per(lambda _: (batch.to(device, non_blocking=True), sync(device)), range(5))
    on_device = batch.to(device)
    trainer.image_features(on_device)  # warm-up (cudnn autotuning)
    encoder = time_per(lambda _: (trainer.image_features(on_device), sync(device)), range(5))
    trainer.batch_idx, trainer.num_batches = 0, 10 ** 9  # no LR step from these extra steps
    trainer.set_model_mode("train")
    step = time_per(lambda _: (trainer.forward_backward({"img": batch, "label": labels}), sync(device)), range(5))
    return dict(decode=decode, store=stored, augment=augment, batch_size=batch_size, h2d=h2d,
                encoder=encoder, step=max(step - encoder - h2d, 0.0))


def same_run(a, b):
    return a["steps"] == b["steps"] and a["metrics"] == b["metrics"] and a["weights"] == b["weights"]


def parallel_section(bench, args, report):
    """N exact TaskRes runs at once (cores shared out) against the same N one after another."""
    from dassl.utils.threads import available_cpus, thread_env
    cores = available_cpus()
    n = args.parallel

    def start(seed, label, env):
        name = f"parallel-{label}-{seed}"
        argv = [sys.executable, os.path.join(REPO, "train.py"), *bench.argv("TaskRes", "exact", name, seed=seed)]
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **env})

    def finish(procs):
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                raise RuntimeError(f"a parallel run failed:\n{err[-2000:]}")

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    t0 = time.perf_counter()
    for seed in range(1, n + 1):
        finish([start(seed, "sequential", thread_env(cores, 1, env=base))])
    sequential = time.perf_counter() - t0
    t0 = time.perf_counter()
    finish([start(seed, "parallel", thread_env(cores, n, env=base)) for seed in range(1, n + 1)])
    parallel = time.perf_counter() - t0
    report(f"\n## Parallel runs: {n} exact TaskRes runs (train.py, seeds 1-{n}) on {cores} cores\n")
    report(tabulate([["one after another", f"{cores} each", f"{sequential:.1f} s"],
                     [f"{n} at once", f"{thread_env(cores, n, env={})['OMP_NUM_THREADS']} each, passive waiting",
                      f"{parallel:.1f} s"]], headers=["how", "OMP threads", "total wall"], tablefmt="github"))
    report(f"at once / one after another: {parallel / sequential:.2f}x the time")
    return dict(n=n, cores=cores, sequential_s=sequential, parallel_s=parallel)


def taskres_table(reference_s, exact_s):
    """Rows (dataset, runs, hours with the reference pipeline, hours with the exact pipeline)
    of the full TaskRes table, per-pass costs times each run's passes (README's projection)."""
    from benchmarks.paper_time import taskres_table_passes
    from trainers.common.experiment import load_methods
    load_methods()
    rows, totals = [], [0.0, 0.0]
    for name, n_runs, train, _, test in taskres_table_passes():
        hours = [(train + n_runs * test) * reference_s / 3600, (train + test) * exact_s / 3600]
        totals = [t + h for t, h in zip(totals, hours)]
        rows.append([name, n_runs, *(f"{h:.2f} h" for h in hours)])
    rows.append(["all 11", sum(r[1] for r in rows), *(f"{h:.1f} h" for h in totals)])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--arch", nargs="+", default=None,
                        help="random-weight CLIP(s): small (64 px, CPU default), tiny (32 px), RN50, ViT-B/16 "
                             "(224 px; the --device cuda default)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--classes", type=int, default=None, help="default 10 (cuda) / 4 (cpu)")
    parser.add_argument("--per-class", type=int, default=40, help="synthetic images per class (half: train pool)")
    parser.add_argument("--image-size", type=int, default=None, help="side of the JPEGs (default 256 cuda / 96 cpu)")
    parser.add_argument("--epochs", type=int, default=None, help="default 200 (cuda) / 5 (cpu)")
    parser.add_argument("--workers", type=int, default=None, help="DATALOADER.NUM_WORKERS (default 8 cuda / 2 cpu)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once in the parallel section (0: skip)")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    args.arch = args.arch or (["RN50", "ViT-B/16"] if cuda else ["small"])
    args.classes = args.classes or (10 if cuda else 4)
    args.image_size = args.image_size or (256 if cuda else 96)
    args.epochs = args.epochs or (200 if cuda else 5)
    args.workers = 8 if cuda and args.workers is None else (2 if args.workers is None else args.workers)
    if cuda:
        torch.backends.cudnn.benchmark = True
        where = f"cuda ({torch.cuda.get_device_name(0)}), {os.cpu_count()} CPUs"
    else:
        where = f"cpu ({torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f})"
    report = lambda line: print(line, flush=True)  # noqa: E731
    report(f"# Exact pipeline vs reference pipeline on {where}\n{args.shots} shots, {args.classes} classes, "
           f"{args.epochs} epochs, DATALOADER.NUM_WORKERS {args.workers}, synthetic {args.image_size} px JPEGs")
    per_pass = {}
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        benches = {}
        for arch in args.arch:
            bench = benches[arch] = Bench(args, tmp, arch)
            size = {"small": SMALL_CLIP, "tiny": TINY_CLIP}.get(arch, {}).get("image_resolution", 224)
            report(f"\n## CLIP {arch} (random weights, {size} px)\n")
            rows, parts = [], []
            for method in args.methods:
                reference = bench.run(method, "reference")
                exact = bench.run(method, "exact")
                identical = same_run(reference, exact)
                assert identical, f"{method}: the exact pipeline's run differs from the reference ({exact['log']})"
                for r in (reference, exact):
                    rows.append([method, r["pipeline"], f"{r['wall_s']:.1f} s", f"{r['epoch_s'] * 1e3:.0f} ms",
                                 f"{r['data_s'] * 1e3:.0f} ms", f"{100 * r['data_s'] / r['epoch_s']:.1f} %",
                                 f"{r['passes']:,}", "-" if r["prefetched"] is None else
                                 f"{r['prefetched']}/{args.epochs - 1}", "yes" if identical else "NO"])
                c = components(exact["trainer"], args.device)
                n_img, n_batch = len(exact["trainer"].dm.dataset.train_x), len(exact["trainer"].train_loader_x)
                encoder_limit = c["encoder"] / c["batch_size"] * exact["train_passes"]
                parts.append([method, f"{c['decode'] * n_img * 1e3:.1f}", f"{c['store'] * n_img * 1e3:.1f}",
                              f"{c['augment'] * n_img * 1e3:.1f}", f"{c['h2d'] * n_batch * 1e3:.1f}",
                              f"{c['encoder'] * n_batch * 1e3:.1f}", f"{c['step'] * n_batch * 1e3:.1f}",
                              f"{exact['train_s'] / encoder_limit:.2f}x", f"{reference['train_s'] / encoder_limit:.2f}x"])
                if method == "TaskRes":
                    per_pass[arch] = (reference["wall_s"] / reference["passes"], exact["wall_s"] / exact["passes"])
                del exact["trainer"], reference["trainer"]
            report(tabulate(rows, headers=["method", "pipeline", "run wall", "epoch", "data wait / epoch",
                                           "data share", "encoder passes", "next epoch prepared early",
                                           "bit-identical"], tablefmt="github"))
            report("\nWhere an epoch goes (ms per epoch, components timed alone in the main process; with "
                   "workers, decode/store/augment run in them, overlapped with the step):\n")
            report(tabulate(parts, headers=["method", "decode (reference)", "store read (exact)", "augment",
                                            "host-to-device", "encoder", "rest of step", "exact / encoder limit",
                                            "reference / encoder limit"], tablefmt="github"))
        parallel = parallel_section(benches[args.arch[0]], args, report) if args.parallel > 1 else None
    for arch, (reference_s, exact_s) in per_pass.items():
        note = "" if cuda and arch == "RN50" else " (not GPU RN50: shows the method only, not a GPU projection)"
        report(f"\n## Full TaskRes table projected from {arch} TaskRes per-pass costs on {args.device}{note}: "
               f"reference {reference_s * 1e3:.3f} ms, exact {exact_s * 1e3:.3f} ms per encoder pass (whole run)\n")
        try:
            report(tabulate(taskres_table(reference_s, exact_s), headers=["dataset", "runs", "reference pipeline",
                                                                           "exact pipeline"], tablefmt="github"))
        except ImportError as err:  # the experiment layer moved: the projection needs its planner
            report(f"(projection skipped: {err})")
    return parallel


if __name__ == "__main__":
    main()
