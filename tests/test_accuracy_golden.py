"""Accuracy-level regression tests: real train.py runs on the tiny CLIP pretrained here.

Random weights give chance accuracy whatever a method computes; these runs use
`MODEL.BACKBONE.NAME tiny-pretrained`, so a change to what a method computes (normalisation,
prompt template, augmentation stream, the sign of a residual) changes its accuracy. Each run is
planned exactly as scripts/<method>/main.sh plans it (official configs; CoOp with fewer epochs)
in the default pipeline (test features cached, training images augmented afresh at every step:
the reference computation bit for bit), on both demo tasks at 16 shots, and must reproduce its
golden per-seed accuracy (the CPU pipeline is deterministic on one CPU type).

Goldens per weights: the tiny CLIP is pretrained on each machine, and its float32 kernels round
differently on CPUs with and without AVX-512, so the weights (hence every accuracy) come in one
version per instruction-set family. `accuracy_golden.json` keeps one golden set per weights
digest ("weights_sets"), each saying on which CPU it was made. A set may allow a measured
variation for single values ("tolerance", in percentage points, with the measurement that
justifies it) and may list methods whose values predate an intended change ("stale", with why);
both are reported, never silent. On weights no set knows, the exact comparison is skipped with
the command that adds a set; the qualitative checks below still run.

Regenerate the set of this machine's weights after an intended change of results (and say why
in the commit); other sets are kept:
    FEWSHOT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_accuracy_golden.py
A new method needs one line in GOLDEN_METHODS, then a regeneration.

Helpers for other golden modules (tests/test_golden_*.py with their own JSON), importable:
`golden_accuracies(root, methods)` runs a {method: (overrides, seeds)} table;
`check_golden(accuracies, path, weights)` compares with (or, under FEWSHOT_UPDATE_GOLDEN,
writes) the set of `path` for these weights; `read_golden_set`, `weights_digest`, `cpu_model`.
"""
import hashlib
import json
import os
import platform
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from datasets.demo_shapes_generate import TASKS, generate
from experiments.plan import plan_runs
from experiments.collect import read_run_result
from tests.engine_helpers import REPO
from tests.machine_speed import scaled_timeout
from trainers.common import tiny_pretrained
from trainers.common.clip_loader import read_state_dict

GOLDEN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accuracy_golden.json")
UPDATE_ENV = "FEWSHOT_UPDATE_GOLDEN"
SHOTS = 16
SEEDS = (1, 2)
PER_CLASS = (16, 1, 20)  # train, val, test images per class: 120 test images per task
ONE_SEED = (1,)  # methods added later: one seed keeps the module within a few minutes
# planner method -> (train.py overrides beyond its official settings, seeds); one line per method.
GOLDEN_METHODS = {
    "zeroshot": ((), SEEDS),
    "taskres": ((), SEEDS),
    "clip_adapter": ((), SEEDS),
    "coop": (("OPTIM.MAX_EPOCH", "20"), SEEDS),  # 200 official epochs cost minutes on 2 cores; 20 learn
    "tip_adapter": ((), ONE_SEED),
    "tip_adapter_f": ((), ONE_SEED),
    "linear_probe": ((), ONE_SEED),
    "taskres_adapter": ((), ONE_SEED),
    "taskres_image": ((), ONE_SEED),
}
NAMED, UNNAMED = "demo_shapes", "demo_land_use"
PARALLEL_RUNS = 2
pytestmark = pytest.mark.slow  # about 24 training runs: minutes on 2 cores


def _side():
    return tiny_pretrained.ARCHITECTURE["image_resolution"]


@pytest.fixture(scope="session")
def tiny_clip_weights():
    """The tiny CLIP, built once per machine (the cache outlives the session), or now if missing."""
    return tiny_pretrained.ensure_weights()


@pytest.fixture(scope="session")
def tiny_vit_weights():
    """The tiny ViT CLIP, built once per machine, or now if missing."""
    return tiny_pretrained.ensure_weights(tiny_pretrained.ViTSettings())


def _plan(data_root, runs_root, methods=None, common=None):
    side = _side()
    if common is None:  # the tiny CLIP pretrained here; the pipeline is the default one
        common = ("MODEL.BACKBONE.NAME", tiny_pretrained.NAME, "INPUT.SIZE", f"({side}, {side})",
                  "DATALOADER.NUM_WORKERS", "0")
    runs = []
    for dataset in (NAMED, UNNAMED):
        for method, (extra, seeds) in (GOLDEN_METHODS if methods is None else methods).items():
            shots = 0 if method == "zeroshot" else SHOTS
            runs += plan_runs(method, dataset, shots, seeds, runs_root, data_root, extra=(*common, *extra))
    return runs


def _train(run, feature_cache):
    env = dict(os.environ, OMP_NUM_THREADS="1", FEWSHOT_FEATURE_CACHE=feature_cache)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *run.args], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=scaled_timeout(600))
    assert proc.returncode == 0, proc.stdout[-3000:]
    return run, read_run_result(run.output_dir).value


def golden_accuracies(root, methods=None, parallel=PARALLEL_RUNS, common=None):
    """{dataset: {method: {seed: accuracy}}} of the runs of `methods` ({method: (overrides,
    seeds)}, default GOLDEN_METHODS) on both demo tasks under folder `root` (zero-shot: seed "0");
    `common`: the overrides of every run (default: the tiny CLIP pretrained here)."""
    root = str(root)
    data_root = os.path.join(root, "data")
    for dataset in (NAMED, UNNAMED):
        if not os.path.isdir(os.path.join(data_root, dataset)):
            generate(data_root, _side(), *PER_CLASS, task=TASKS[dataset])
    runs = _plan(data_root, os.path.join(root, "runs"), methods, common)
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(_train, runs, [os.path.join(root, "features")] * len(runs)))
    table = {}
    for run, value in results:
        table.setdefault(run.dataset, {}).setdefault(run.method, {})[str(run.seed or 0)] = round(value, 2)
    return table


def weights_digest(path):
    """sha256 over the tensors (not the file bytes, which depend on the serialiser)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(read_state_dict(path).items()):
        digest.update(key.encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cpu_model():
    """This machine's CPU and its AVX-512/AMX support, as a golden set records it."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wide = sorted(f for f in flags if f.startswith(("avx512f", "avx512_fp16", "amx")))
    return f"{model} ({', '.join(wide) if wide else 'no AVX-512'})"


def read_golden_sets(path=GOLDEN_FILE):
    """{weights digest: {"cpu", "accuracies", "tolerance", "stale"}} of a golden file (the
    older one-set layout, {"tiny_clip_weights_sha256", "accuracies"}, reads as one set)."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    if "weights_sets" in data:
        return data["weights_sets"]
    return {data["tiny_clip_weights_sha256"]: {"cpu": "unknown", "accuracies": data["accuracies"]}}


def read_golden_set(path=GOLDEN_FILE, digest=None):
    """The golden set of weights `digest` (None: the file's first set), or None if absent."""
    sets = read_golden_sets(path)
    if digest is None:
        digest = next(iter(sets), None)
    return sets.get(digest)


def _read_golden(path=GOLDEN_FILE, digest=None):
    """The earlier layout of one set ({"tiny_clip_weights_sha256", "accuracies", ...})."""
    digest = digest or next(iter(read_golden_sets(path)), None)
    found = read_golden_set(path, digest)
    return None if found is None else dict(found, tiny_clip_weights_sha256=digest)


def write_golden_set(path, digest, accuracies, keep=("tolerance", "stale")):
    """Write (or replace) the set of weights `digest`, keeping the other sets and this set's
    documented tolerances; "stale" entries are dropped for the methods just regenerated."""
    sets = read_golden_sets(path)
    old = sets.get(digest, {})
    entry = {"cpu": cpu_model(), "accuracies": accuracies}
    for key in keep:
        value = old.get(key)
        if key == "stale" and value:
            value = {m: why for m, why in value.items() if not any(m in t for t in accuracies.values())}
        if value:
            entry[key] = value
    sets[digest] = entry
    with open(path, "w") as f:
        json.dump({"weights_sets": sets}, f, indent=2, sort_keys=True)
        f.write("\n")


def golden_differences(accuracies, golden):
    """(differences beyond the allowed variation, notes on tolerated and stale values)."""
    tolerance, stale = golden.get("tolerance", {}), golden.get("stale", {})
    expected = golden["accuracies"]
    wrong, notes = [], []
    for dataset in sorted(set(expected) | set(accuracies)):
        for method in sorted(set(expected.get(dataset, {})) | set(accuracies.get(dataset, {}))):
            if method in stale:
                notes.append(f"{dataset}/{method}: not compared ({stale[method]})")
                continue
            want, got = expected.get(dataset, {}).get(method), accuracies.get(dataset, {}).get(method)
            if want is None or got is None:
                wrong.append(f"{dataset}/{method}: {'no golden' if want is None else 'not run'}")
                continue
            for seed in sorted(set(want) | set(got)):
                if seed not in want or seed not in got:
                    wrong.append(f"{dataset}/{method}/seed {seed}: present on one side only")
                    continue
                allowed = tolerance.get(dataset, {}).get(method, {}).get(seed, {})
                pp = float(allowed.get("pp", 0.0))
                if abs(got[seed] - want[seed]) > pp + 1e-9:
                    wrong.append(f"{dataset}/{method}/seed {seed}: {got[seed]} (golden {want[seed]}"
                                 f"{f' +- {pp}' if pp else ''})")
                elif got[seed] != want[seed]:
                    notes.append(f"{dataset}/{method}/seed {seed}: {got[seed]} vs golden {want[seed]}, within the "
                                 f"measured +- {pp} ({allowed.get('why', '')})")
    return wrong, notes


def golden_set_or_skip(accuracies, path, weights):
    """The golden set of `path` made with these `weights` (a tiny CLIP pretrained on this CPU
    differs from one pretrained on another). With FEWSHOT_UPDATE_GOLDEN=1: write `accuracies` as
    that set and skip; weights without a set skip with the command that adds one."""
    digest = weights_digest(weights)
    if os.environ.get(UPDATE_ENV):
        write_golden_set(path, digest, accuracies)
        pytest.skip(f"wrote the set of weights {digest[:12]} ({cpu_model()}) to {path}; review the diff and commit it")
    golden = read_golden_set(path, digest)
    if golden is None:
        known = ", ".join(f"{d[:12]} ({s.get('cpu', '?')})" for d, s in read_golden_sets(path).items())
        pytest.skip(f"no golden set in {path} for the weights {weights} built on this CPU ({cpu_model()}, "
                    f"{digest[:12]}; known: {known or 'none'}). Add one with {UPDATE_ENV}=1 after checking the "
                    f"qualitative tests pass.")
    return dict(golden, digest=digest)


def check_exact_golden(accuracies, path, weights):
    """Assert `accuracies` (any nesting) equal the golden set of these weights exactly."""
    golden = golden_set_or_skip(accuracies, path, weights)
    assert accuracies == golden["accuracies"], (
        f"accuracies changed: got {json.dumps(accuracies, sort_keys=True)}; goldens in {path}, set "
        f"{golden['digest'][:12]}. If intended, regenerate with {UPDATE_ENV}=1 and say why in the commit")


def check_golden(accuracies, path, weights):
    """Assert `accuracies` match the set of `path` made with these tiny-CLIP `weights`, within
    the set's documented tolerances (see golden_set_or_skip for updates and unknown weights)."""
    golden = golden_set_or_skip(accuracies, path, weights)
    digest = golden["digest"]
    wrong, notes = golden_differences(accuracies, golden)
    for note in notes:
        warnings.warn(f"golden {os.path.basename(path)}: {note}")
    assert not wrong, (f"accuracies changed ({len(wrong)}): {'; '.join(wrong)}. Goldens: {path}, set {digest[:12]} "
                       f"({golden.get('cpu', '?')}). If the change is intended, regenerate with {UPDATE_ENV}=1 and "
                       f"say why in the commit")


@pytest.fixture(scope="module")
def accuracies(tiny_clip_weights, tmp_path_factory):
    """{dataset: {method: {seed: accuracy}}} of every golden run (zero-shot under seed "0")."""
    return golden_accuracies(tmp_path_factory.mktemp("golden"))


def test_tiny_clip_is_the_one_the_goldens_were_made_with(tiny_clip_weights):
    if os.environ.get(UPDATE_ENV):
        pytest.skip("regenerating the goldens")
    digest, sets = weights_digest(tiny_clip_weights), read_golden_sets()
    if digest not in sets:
        pytest.skip(
            f"the tiny CLIP pretrained on this machine ({tiny_clip_weights}, {cpu_model()}) is none of the "
            f"{len(sets)} versions the goldens know ({', '.join(s.get('cpu', '?') for s in sets.values())}): "
            f"its settings, the caption data or the float kernels (CPU type, torch version) differ. Add this "
            f"CPU's set with {UPDATE_ENV}=1 once the qualitative tests pass")


def test_golden_accuracies_reproduce_exactly(accuracies, tiny_clip_weights):
    for sets in read_golden_sets().values():
        for methods in sets["accuracies"].values():
            for method in methods:
                assert method in GOLDEN_METHODS, f"{method} has goldens but no entry in GOLDEN_METHODS"
    check_golden(accuracies, GOLDEN_FILE, tiny_clip_weights)


def _mean(values):
    values = list(values.values())
    return sum(values) / len(values)


def test_taskres_at_16_shots_beats_zero_shot(accuracies):
    for dataset in (NAMED, UNNAMED):
        assert _mean(accuracies[dataset]["taskres"]) > accuracies[dataset]["zeroshot"]["0"], dataset


def test_zero_shot_knows_the_named_task_but_not_the_unnamed_one(accuracies):
    chance = 100 / 6
    named, unnamed = accuracies[NAMED]["zeroshot"]["0"], accuracies[UNNAMED]["zeroshot"]["0"]
    assert chance + 20 < named < 95  # above chance, short of saturation: room for few-shot gains
    assert unnamed < chance + 15


def test_on_unnamed_task_text_side_methods_learn_while_clip_adapter_stays_near_the_prior(accuracies):
    task = accuracies[UNNAMED]
    adapter = _mean(task["clip_adapter"])
    assert _mean(task["taskres"]) > adapter + 25
    assert _mean(task["coop"]) > adapter + 25
