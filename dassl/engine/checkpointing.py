"""Saving, loading and resuming the registered models of a trainer (the checkpoint half of
Dassl's `TrainerBase`): a kept checkpoint per saved epoch, the rolling resume checkpoint that
holds the whole run state (optimisers, schedulers, random generators, model selection), and the
check that a resumed run has the settings it was started with."""
import os
import os.path as osp

import torch

from dassl.utils import atomic_write, load_checkpoint, mkdir_if_missing, resume_from_checkpoint, save_checkpoint
from dassl.utils.errors import CheckpointError
from dassl.utils.torchtools import capture_rng_state, read_checkpoint_pointer, strip_module_prefix

RESUME_FILE = "resume.pth.tar"  # rolling resume checkpoint, one per model folder while training


class CheckpointingMixin:
    """The checkpoint methods of `TrainerBase` (which holds the registered models they act on)."""

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name="", keep=True):
        """Save every registered model. `keep=False` writes the rolling resume checkpoint
        instead: `RESUME_FILE`, without touching the `checkpoint` pointer or kept files."""
        rng_state = capture_rng_state()
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "rng_state": rng_state,
                "trainer": type(self).__name__,
                "settings": self.training_settings(),
                "selection": self.selection_state(),
                "method_state": self.resume_state(),
            }
            if keep:
                save_checkpoint(state, osp.join(directory, name), is_best=is_best, model_name=model_name)
            else:
                save_rolling_checkpoint(state, osp.join(directory, name, RESUME_FILE))

    def selection_state(self):
        """The engine's own state across epochs (best validation value and its epoch), saved
        with every checkpoint so a resumed run selects exactly as an uninterrupted one."""
        best = getattr(self, "best_result", None)
        if best is None:
            return None
        return {"best_result": float(best), "best_epoch": getattr(self, "best_epoch", None)}

    def load_selection_state(self, state):
        if state:
            self.best_result, self.best_epoch = state["best_result"], state.get("best_epoch")

    def resume_state(self):
        """Hook: anything else a method keeps across epochs (searched values, running
        statistics, schedules of its own), as a torch-saveable object. It is saved with the
        rolling and kept checkpoints and handed back to `load_resume_state` on resume."""
        return None

    def load_resume_state(self, state):
        """Hook: restore what `resume_state` returned (None from a checkpoint without it)."""

    def training_settings(self):
        """Config values that shape what training computes (not where files are, how often it
        prints), stored with each checkpoint so a resume under other settings is refused."""
        cfg = getattr(self, "cfg", None)
        if cfg is None:
            return None
        return {k: v for k, v in _flatten(cfg).items() if not k.startswith(RESUME_INDEPENDENT)}

    def _check_same_settings(self, checkpoint, path):
        saved, now = checkpoint.get("settings"), self.training_settings()
        if not saved or not now:
            return  # a checkpoint from before settings were recorded, or a trainer without cfg
        differ = [k for k in sorted(set(saved) & set(now)) if saved[k] != now[k]]
        if differ:
            shown = "; ".join(f"{k} {saved[k]!r} (now {now[k]!r})" for k in differ[:5])
            raise CheckpointError(
                f'"{path}" was trained with other settings: {shown}. Resuming would mix the two runs. Use '
                "another --output-dir for the new settings, or rerun with the old ones to continue.")

    def remove_rolling_checkpoints(self, directory):
        for name in self.get_model_names():
            path = osp.join(directory, name, RESUME_FILE)
            if osp.exists(path):
                os.remove(path)

    def resume_model_if_exist(self, directory, required=False):
        """Resume every registered model from the latest checkpoint all of them have in
        `directory/<name>/`: a kept one (the `checkpoint` pointer) or the rolling resume file.
        Returns the epoch to start from (0: none found; an error instead if `required`)."""
        names = self.get_model_names()
        if not names:
            return 0
        # epoch -> file name, per model; a kill between two models' saves leaves them one epoch
        # apart, so the start is the latest epoch every model has.
        available = {name: self._resume_candidates(osp.join(directory, name)) for name in names}
        common = set.intersection(*(set(c) for c in available.values()))
        if not common:
            if required:
                raise CheckpointError(
                    f'--resume "{directory}" holds no checkpoint of {", ".join(names)} (looked for '
                    f"<folder>/<model>/checkpoint and {RESUME_FILE} in {', '.join(names)}). Point --resume at "
                    "the output folder of an interrupted run of this trainer, or drop --resume.")
            print(f'No checkpoint found in "{directory}": training from scratch (epoch 1)')
            return 0
        start = max(common)
        files = {name: available[name][start] for name in names}
        kinds = sorted({"rolling resume checkpoint" if f == RESUME_FILE else "kept checkpoint" for f in files.values()})
        total = getattr(self, "max_epoch", None)
        print(f'Found checkpoint at "{directory}" (will resume training): resuming after epoch {start}'
              f"{f' of {total}' if total else ''} from the {' and '.join(kinds)} "
              f"{', '.join(osp.join(n, f) for n, f in files.items())}")
        for i, name in enumerate(names):
            path = osp.join(directory, name, files[name])
            checkpoint = load_checkpoint(path)
            print(f'Loading checkpoint from "{path}"')
            self._check_same_settings(checkpoint, path)
            self._load_weights(name, checkpoint, path)
            resume_from_checkpoint(osp.join(directory, name), None, self._optims[name],
                                   self._scheds[name], fname=files[name], checkpoint=checkpoint)
            if i == 0:  # every model's file of one epoch holds the same run state
                self._load_run_state(checkpoint, path)
        return start

    def _load_run_state(self, checkpoint, path):
        selection = checkpoint.get("selection")
        if selection is None and "selection" not in checkpoint and self._selects_on_val():
            raise CheckpointError(
                f'"{path}" was written by an older version that did not keep the best-validation state, '
                "so resuming would choose the final model differently from an uninterrupted run. Start "
                "this run again in a new --output-dir (or delete the folder's checkpoints).")
        self.load_selection_state(selection)
        if selection and selection.get("best_epoch"):
            print(f"Restored the model selection: best val {selection['best_result']:.4f} at epoch "
                  f"{selection['best_epoch']}")
        self.load_resume_state(checkpoint.get("method_state"))

    def _selects_on_val(self):
        cfg = getattr(self, "cfg", None)
        final_model = getattr(self, "final_model", None) or (cfg.TEST.FINAL_MODEL if cfg is not None else None)
        return cfg is not None and not cfg.TEST.NO_TEST and final_model == "best_val"

    @staticmethod
    def _resume_candidates(folder):
        """{epoch: file name} of the kept checkpoints in `folder` (`model.pth.tar-<epoch>` and
        the file the `checkpoint` pointer names) and of the rolling resume file."""
        found = {}
        for fname in _listdir(folder):
            if _epoch_of(fname) is not None:
                found[_epoch_of(fname)] = fname
        pointer = read_checkpoint_pointer(folder)
        if pointer is not None and _epoch_of(pointer) is None and osp.isfile(osp.join(folder, pointer)):
            found.setdefault(load_checkpoint(osp.join(folder, pointer)).get("epoch"), pointer)
        rolling = osp.join(folder, RESUME_FILE)
        if osp.isfile(rolling):
            try:
                found.setdefault(load_checkpoint(rolling).get("epoch"), RESUME_FILE)
            except CheckpointError as e:
                print(f"Ignoring a damaged rolling resume checkpoint: {e}")
        found.pop(None, None)
        return found

    def _load_weights(self, name, checkpoint, path):
        """Load the checkpoint's weights into model `name`; a checkpoint of another model
        (another trainer, another class count) raises `CheckpointError` saying so."""
        state_dict = checkpoint.get("state_dict")
        if not isinstance(state_dict, dict):
            raise CheckpointError(f'"{path}" has no "state_dict": it is not a model checkpoint of this toolkit or Dassl.')
        module = self._models[name]
        try:
            module.load_state_dict(state_dict)
        except RuntimeError as e:
            expected, given = set(module.state_dict()), set(strip_module_prefix(state_dict))
            missing, unexpected = sorted(expected - given), sorted(given - expected)
            if missing or unexpected:
                what = f"lacks {_few(missing)}" if missing else ""
                if unexpected:
                    what += (" and " if what else "") + f"has {_few(unexpected)} it does not know"
            else:
                what = "has weights of other shapes (" + str(e).strip().splitlines()[-1].strip() + ")"
            saved_by = checkpoint.get("trainer")
            origin = f"saved by {saved_by}" if saved_by else "saved by another trainer or for other classes"
            raise CheckpointError(
                f'"{path}" does not fit {self.cfg_trainer_name()}\'s model "{name}" ({origin}): it {what}. '
                f"Point --model-dir/--resume at a run of {self.cfg_trainer_name()} on the same classes.") from e

    def cfg_trainer_name(self):
        cfg = getattr(self, "cfg", None)
        return cfg.TRAINER.NAME if cfg is not None else type(self).__name__

    def load_model(self, directory, epoch=None):
        """Load `model-best.pth.tar` (or `model.pth.tar-<epoch>`) for every registered model,
        recording the file and its epoch in `run_record`."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        if not osp.isdir(directory):
            raise CheckpointError(f'--model-dir "{directory}" does not exist; point it at the output folder '
                                  "of a finished training run.")
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        loaded = {}
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                present = sorted(p for p in _listdir(osp.join(directory, name)) if p.startswith("model"))
                hint = (f"Files there: {', '.join(present)}. Check --load-epoch." if present else
                        f'"{directory}" holds no saved {name} model: is it a run of {self.cfg_trainer_name()}?')
                raise CheckpointError(f'No model file at "{model_path}" (looked for {model_file} of "{name}"). {hint}')
            checkpoint = load_checkpoint(model_path)
            val_result = checkpoint.get("val_result")
            val_str = f"{val_result:.1f}" if isinstance(val_result, (int, float)) else "n/a"
            print(f'Load {model_path} to {name} (epoch={checkpoint.get("epoch")}, val_result={val_str})')
            self._load_weights(name, checkpoint, model_path)
            loaded[name] = (model_path, checkpoint.get("epoch"))
        if loaded:
            paths = [p for p, _ in loaded.values()]
            epochs = {e for _, e in loaded.values()}
            self.run_record["loaded_model"] = paths[0] if len(paths) == 1 else paths
            self.run_record["loaded_epoch"] = epochs.pop() if len(epochs) == 1 else sorted(epochs)


# Keys that do not change what training computes: paths, logging, checkpoint cadence, test-time settings.
RESUME_INDEPENDENT = ("OUTPUT_DIR", "RESUME", "DATASET.ROOT", "DATASET.SUBSET_FILE", "DATALOADER.NUM_WORKERS",
                      "DATALOADER.TEST.", "DATALOADER.PERSISTENT_WORKERS", "DATALOADER.IMAGE_STORE.",
                      "TRAIN.PRINT_FREQ", "TRAIN.RESUME_EVERY_MINUTES", "TRAIN.CHECKPOINT_FREQ", "MODEL.BACKBONE.PATH",
                      "TRAIN.FEATURE_CACHE.ROOT", "VERBOSE", "USE_CUDA", "TEST.")


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _few(keys, shown=3):
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(f'"{k}"' for k in keys[:shown]) + more


def save_rolling_checkpoint(state, path):
    mkdir_if_missing(osp.dirname(path))
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def _epoch_of(checkpoint_name):
    prefix = "model.pth.tar-"
    if checkpoint_name.startswith(prefix) and checkpoint_name[len(prefix):].isdigit():
        return int(checkpoint_name[len(prefix):])
    return None


def _listdir(path):
    return sorted(os.listdir(path)) if osp.isdir(path) else []
