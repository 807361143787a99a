"""Every declared method that trains resumes bit-identically after SIGKILL, model selection
included: each run picks its final model on the val split (TEST.FINAL_MODEL best_val), is
killed in a middle epoch with a rolling checkpoint written every epoch, is rerun in the same
folder, and must end with the uninterrupted run's result.json, checkpoint tensors and chosen
epoch. The methods come from the declarations (`trainers.common.experiment.METHODS`) and the
trainers registered without one, so methods added later are tested without editing this file.
Each run is tiny: 2 shots of a 10-class fixture, 6 epochs, a tiny random-weight CLIP."""
import os
import re
import signal

import pytest
import torch

from dassl.engine import TRAINER_REGISTRY
from dassl.utils import read_json
from tests.clip_run_helpers import write_fixture_and_clip
from tests.engine_helpers import train_killed_at_log_line
from tests.tiny_clip import save_tiny_clip
from tests.engine_helpers import REPO, run_train
from trainers.common.experiment import load_methods

pytestmark = pytest.mark.slow

DATASET, STEM = "EuroSAT", "eurosat"
EPOCHS, KILL_AT, SHOTS = 6, 3, 2
# Keep the run tiny and make every epoch write a rolling checkpoint; select on val.
COMMON = ["DATASET.NUM_SHOTS", str(SHOTS), "OPTIM.MAX_EPOCH", str(EPOCHS), "TRAIN.RESUME_EVERY_MINUTES", "0",
          "TEST.FINAL_MODEL", "best_val", "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
          "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATALOADER.TEST.BATCH_SIZE", "16", "TRAIN.PRINT_FREQ", "1",
          "TRAIN.CHECKPOINT_FREQ", "0"]
# Per trainer: the smallest settings that still run its real code path.
SMALLER = {"TipAdapter": ["TRAINER.TIP_ADAPTER.SEARCH_STEP", "(10, 5)", "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "2"],
           "TipAdapterF": ["TRAINER.TIP_ADAPTER.SEARCH_STEP", "(10, 5)", "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "2"],
           "LinearProbeCLIP": ["TRAINER.LINEAR_PROBE.SEARCH_STEPS", "2", "TRAINER.LINEAR_PROBE.MAX_ITER", "100"]}
# Differ between two identical runs by design.
VOLATILE = ("finished", "cost")  # when it finished and what it cost: wall time and memory differ run to run


def _cases():
    """(id, trainer, config file or None, method overrides) per declared trainable method,
    then one per registered trainer that no method declares (its first config file)."""
    methods = load_methods()
    cases, declared = [], set()
    for method in methods.values():
        declared.update(method.trainers)
        if not method.trains:
            continue
        stem = method.config(STEM, SHOTS)
        if method.config_dir is None:
            config = None
        else:
            folder = os.path.join(REPO, method.config_dir) if method.config_dir else \
                os.path.join(REPO, "configs", "trainers", method.trainer)
            config = os.path.join(folder, stem + ".yaml")
        cases.append(pytest.param(method.trainer, config, list(method.overrides(STEM, SHOTS)), id=method.name))
    for name in sorted(TRAINER_REGISTRY.registered_names()):
        folder = os.path.join(REPO, "configs", "trainers", name)
        if name in declared or not os.path.isdir(folder):
            continue  # the engine's test trainers have no config folder
        configs = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
        if configs:
            cases.append(pytest.param(name, os.path.join(folder, configs[0]), [], id=f"trainer-{name}"))
    return cases


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_every_method")
    data_root, clip = write_fixture_and_clip(root, DATASET, per_class=6)
    return root, data_root, {"rn": clip, "vit": save_tiny_clip(str(root), arch="vit")}


def _args(world, trainer, config, overrides, out):
    _, data_root, clips = world
    # methods that work inside the image tower's blocks get the tiny ViT, the others the tiny ResNet
    clip = clips["vit" if getattr(TRAINER_REGISTRY.get(trainer), "NEEDS_VIT", False) else "rn"]
    args = ["--root", data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(out)]
    if config:
        args += ["--config-file", config]
    return args + ["DATASET.NAME", DATASET, "MODEL.BACKBONE.PATH", clip, *overrides, *COMMON,
                   *SMALLER.get(trainer, [])]


def _comparable_result(out):
    record = read_json(os.path.join(str(out), "result.json"))
    text = repr({k: v for k, v in record.items() if k not in VOLATILE})
    return text.replace(str(out), "<out>")


def _tensors(out):
    """{model folder/file: checkpoint state_dict} of every kept model file of a run."""
    found = {}
    for folder in sorted(os.listdir(out)):
        path = os.path.join(out, folder)
        if not os.path.isfile(os.path.join(path, "checkpoint")):
            continue
        for fname in sorted(os.listdir(path)):
            if fname.startswith("model"):
                checkpoint = torch.load(os.path.join(path, fname), map_location="cpu", weights_only=False)
                found[f"{folder}/{fname}"] = (checkpoint["epoch"], checkpoint["state_dict"])
    return found


@pytest.mark.parametrize("trainer, config, overrides", _cases())
def test_sigkill_in_a_middle_epoch_resumes_to_the_uninterrupted_result(world, trainer, config, overrides):
    root = world[0]
    case = f"{trainer}_{abs(hash((config, tuple(overrides)))) % 10**8}"
    reference, killed = root / f"{case}_reference", root / f"{case}_killed"
    args = lambda out: _args(world, trainer, config, overrides, out)  # noqa: E731
    ref_stdout = run_train(args(reference), timeout=600).stdout
    iterative = f"epoch [{EPOCHS}/{EPOCHS}]" in ref_stdout

    # A trainer with epochs dies in the middle one; a one-step fit (cache, closed-form) dies
    # once its model is being built and must then simply start over.
    pattern = rf"epoch \[{KILL_AT}/{EPOCHS}\]" if iterative else r"Loading CLIP"
    code = train_killed_at_log_line(args(killed), pattern)
    assert code == -signal.SIGKILL, f"the run ended ({code}) without its log showing {pattern!r}"
    assert not os.path.exists(killed / "result.json")

    resumed = run_train(args(killed), timeout=600).stdout
    if iterative:
        start = int(re.search(rf"resuming after epoch (\d+) of {EPOCHS}", resumed).group(1))
        assert 1 <= start <= KILL_AT
        assert f"epoch [{start}/{EPOCHS}]" not in resumed and f"epoch [{start + 1}/{EPOCHS}]" in resumed

    assert _comparable_result(killed).replace("_killed", "_X") == \
        _comparable_result(reference).replace("_reference", "_X")
    ref, got = _tensors(reference), _tensors(killed)
    assert sorted(got) == sorted(ref)
    # only a run with nothing to train (TaskRes' base alone, plain or enhanced) keeps no model
    assert ref or "has nothing to train" in ref_stdout
    for name, (epoch, state) in ref.items():
        assert got[name][0] == epoch, f"{name}: chosen epoch {got[name][0]}, uninterrupted {epoch}"
        for key, tensor in state.items():
            if torch.is_tensor(tensor):
                assert torch.equal(tensor, got[name][1][key]), f"{name}: {key}"
    result = read_json(os.path.join(str(killed), "result.json"))
    if iterative:
        assert result["best_val"]["epoch"] == result["loaded_epoch"]
