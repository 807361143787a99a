"""The engine keeps the model selection and a method's own state with every checkpoint: a
trainer that defines `resume_state()` / `load_resume_state()` gets its state back on resume,
with the best validation value and epoch, without any code of its own for checkpoints (the toy
plugin trainer, in process, real checkpoint files)."""
import os

import pytest
import torch

from dassl.engine import TRAINER_REGISTRY
from dassl.engine.checkpointing import RESUME_FILE
from dassl.utils.errors import CheckpointError
from tests.clip_run_helpers import build_in_process
from tests.engine_helpers import TOY_PLUGIN, toy_args, write_toy_folder
from trainers.common.experiment import import_plugin

Toy = import_plugin(TOY_PLUGIN).Toy


class ToyWithState(Toy):
    """Counts something across epochs, as a method with a running statistic would."""

    seen = 0

    def resume_state(self):
        return {"seen": self.seen}

    def load_resume_state(self, state):
        self.seen = state["seen"] if state else 0


if "ToyWithState" not in TRAINER_REGISTRY:
    TRAINER_REGISTRY.register(ToyWithState)


def _trainer(root, out, *opts):
    args = toy_args(root, out, *opts)
    args[args.index("--trainer") + 1] = "ToyWithState"
    return build_in_process(args)


def test_method_state_and_selection_come_back_on_resume(tmp_path):
    root, out = write_toy_folder(str(tmp_path / "data")), str(tmp_path / "out")
    first = _trainer(root, out, "TEST.FINAL_MODEL", "best_val")
    first.seen, first.best_result, first.best_epoch = 7, 55.0, 2
    first.save_model(1, out, keep=False)  # the rolling checkpoint after epoch 2
    assert torch.load(os.path.join(out, "model", RESUME_FILE), weights_only=False)["selection"] == \
        {"best_result": 55.0, "best_epoch": 2}

    resumed = _trainer(root, out, "TEST.FINAL_MODEL", "best_val")
    assert (resumed.seen, resumed.best_epoch) == (0, None)
    assert resumed.resume_model_if_exist(out) == 2
    assert (resumed.seen, resumed.best_result, resumed.best_epoch) == (7, 55.0, 2)


def test_a_checkpoint_without_selection_state_is_not_resumed_into_a_best_val_run(tmp_path):
    root, out = write_toy_folder(str(tmp_path / "data")), str(tmp_path / "out")
    _trainer(root, out, "TEST.FINAL_MODEL", "best_val").save_model(1, out, keep=False)
    path = os.path.join(out, "model", RESUME_FILE)
    old = torch.load(path, weights_only=False)
    del old["selection"], old["method_state"]  # as written before the selection was kept
    torch.save(old, path)
    with pytest.raises(CheckpointError, match="older version that did not keep the best-validation state"):
        _trainer(root, out, "TEST.FINAL_MODEL", "best_val").resume_model_if_exist(out)
    # a run that deploys its last epoch selects nothing: it resumes as before
    assert _trainer(root, out).resume_model_if_exist(out) == 2
