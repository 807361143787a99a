"""Helpers for engine tests: a toy image folder on disk and train.py subprocess runs."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_PLUGIN = os.path.join(REPO, "tests", "plugins", "toy_plugin.py")
COLORS = [(220, 30, 30), (30, 200, 40), (40, 60, 220)]


def write_toy_folder(root, per_class=(6, 4), seed=0):
    """ROOT/toy/{train,test}/<class>/*.png: noisy solid colours, one colour per class."""
    rng = np.random.RandomState(seed)
    for split, n in zip(("train", "test"), per_class):
        for ci, color in enumerate(COLORS):
            folder = os.path.join(root, "toy", split, f"class_{ci}")
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                pixels = np.clip(np.array(color) + rng.randint(-40, 40, size=(12, 12, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(folder, f"img_{i}.png"))
    return root


def toy_args(root, output_dir, *overrides, flags=()):
    """train.py arguments for the toy trainer (fast: 8x8 input, SGD, cosine + warmup)."""
    return [
        *flags, "--plugin", TOY_PLUGIN, "--root", str(root), "--output-dir", str(output_dir), "--seed", "1",
        "--trainer", "Toy",
        "DATASET.NAME", "ToyFolder", "INPUT.SIZE", "(8, 8)",
        "INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.5", "OPTIM.MAX_EPOCH", "4", "OPTIM.LR_SCHEDULER", "cosine",
        "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "TRAIN.PRINT_FREQ", "2",
        *overrides,
    ]


def run_train(args, check=True, cwd=REPO, timeout=300, env=None):
    """train.py as a subprocess; `timeout` (reference-machine seconds) scales with the machine."""
    from tests.machine_speed import scaled_timeout
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=scaled_timeout(timeout),
                          env=None if env is None else {**os.environ, **env})
    if check and proc.returncode != 0:
        raise AssertionError(f"train.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def train_killed_at_log_line(args, pattern, timeout=600):
    """Run train.py until its log shows a line matching the regex `pattern`, then SIGKILL it
    (see tests/kill_at_log_line.py); the exit code: -SIGKILL, or the code of a run that ended
    without ever printing such a line."""
    from tests.machine_speed import scaled_timeout
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "kill_at_log_line.py"), pattern, *args],
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=scaled_timeout(timeout))
    return proc.returncode
