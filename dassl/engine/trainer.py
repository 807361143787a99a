"""Trainer base classes (Dassl `dassl.engine.trainer` API).

Hook order: `train()` = before_train -> per epoch (before_epoch, run_epoch, after_epoch) ->
after_train. Only modules passed to `register_model` are saved, loaded, switched between
train/eval mode and stepped, which is how CLIP methods keep the frozen encoders out of it.
"""
import datetime
import hashlib
import logging
import os
import os.path as osp
import platform
import resource
import time
from collections import OrderedDict

import numpy as np
import torch
from tqdm import tqdm

from dassl.data import DataManager
from dassl.evaluation import build_evaluator
from dassl.utils import (AverageMeter, MetricMeter, atomic_write, load_checkpoint, mkdir_if_missing,
                         read_json, resume_from_checkpoint, save_checkpoint, write_json)
from dassl.utils.errors import CheckpointError, TestSplitSealed, UserError
from dassl.utils.tools import remove_stale_temp_files
from dassl.utils.torchtools import capture_rng_state, read_checkpoint_pointer, strip_module_prefix

from .protocol import ORACLE, sealed_message

RESULT_FILE = "result.json"  # written when a run's final test finished: the "done" marker
REQUEST_FILE = "request.json"  # what a launcher asked this run to be; copied into result.json
RESUME_FILE = "resume.pth.tar"  # rolling resume checkpoint, one per model folder while training
SUBSET_FILE = "subset.jsonl"  # the few-shot train/val images of the run, written by its dataset


class TrainerBase:
    """Registry of models/optimizers/schedulers plus the generic train loop.

    `trains`: False for trainers that only evaluate (zero-shot); train.py then accepts
    DATASET.NUM_SHOTS 0 and OPTIM.MAX_EPOCH 0. `run_record`: facts about this run that the
    config does not say (the model file an evaluation loaded, the CLIP architecture really
    loaded), merged into result.json.
    """

    trains = True

    def __init__(self):
        self._models = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self._writer = None
        self.run_record = {}

    def register_model(self, name="model", model=None, optim=None, sched=None):
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot register a model before super().__init__() has run")
        if name in self._models:
            raise KeyError(f'A model named "{name}" is already registered')
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None):
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if name not in names_real:
                raise KeyError(f'No registered model named "{name}"; registered: {names_real}')
        return names

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

    def set_model_mode(self, mode="train", names=None):
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(f'Unknown model mode "{mode}" (use train, eval or test)')

    def update_lr(self, names=None):
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss):
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"Loss is infinite or NaN! ({self.precision_description()})")

    def precision_description(self):
        """Which precision setting the loss was computed under, for the NaN/inf error."""
        return "no precision setting"

    def init_writer(self, log_dir):
        if self._writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional; a warning on every run would only be noise
            logging.getLogger(__name__).debug("tensorboard is not installed: training scalars are not logged")
            return
        mkdir_if_missing(log_dir)
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag, scalar_value, global_step=None):
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch, max_epoch):
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self):
        pass

    def after_train(self):
        pass

    def before_epoch(self):
        pass

    def after_epoch(self):
        pass

    def run_epoch(self):
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss):
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names=None):
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss, names=None):
        """With a `scaler` (torch.amp.GradScaler, set by trainers that train in fp16 on a GPU)
        the loss is scaled for backward and the steps go through it; otherwise plain."""
        self.model_zero_grad(names)
        scaler = getattr(self, "scaler", None)
        if scaler is None:
            self.model_backward(loss)
            self.model_update(names)
            return
        self.detect_anomaly(loss)
        scaler.scale(loss).backward()
        for name in self.get_model_names(names):
            scaler.step(self._optims[name])
        scaler.update()


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


class SimpleTrainer(TrainerBase):
    """Data, model, evaluator and the epoch-level hooks for a single-dataset trainer."""

    def __init__(self, cfg):
        super().__init__()
        self.check_cfg(cfg)
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.run_started = time.time()
        self.protocol = cfg.get("PROTOCOL", "")
        # What picks the deployed model: "best_val" / "last_step" (TEST.FINAL_MODEL), and on
        # which split best_val selects; a method may set both from its protocol.
        self.final_model = cfg.TEST.FINAL_MODEL
        self.selection_split = "val"
        self._test_loader = None
        self.build_data_loader()
        self.subset_hash = self.export_subset()
        if self.protocol != ORACLE:
            self.seal_test_split()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf
        self.best_epoch = None  # 1-based epoch of best_result
        self.final_results = None

    def check_cfg(self, cfg):
        """Hook: raise on config values this trainer cannot run with."""

    # The fewest val images per class a selection on the val split is made on; a method or
    # protocol that needs more sets its own.
    min_val_per_class = 1

    def val_selections(self):
        """Hook: what this run chooses on the val split, as (what, setting that turns it off)
        pairs; a method adding its own search extends the engine's list."""
        if not self.cfg.TEST.NO_TEST and self.final_model == "best_val" and self.selection_split == "val":
            return [("the best epoch", "TEST.FINAL_MODEL last_step")]
        return []

    def check_val_selection(self, selections=None):
        """Stop before training when the val split is too small for what is selected on it
        (`min_val_per_class` images for every class); record the counts used in result.json."""
        selections = self.val_selections() if selections is None else selections
        if not selections:
            return
        classnames = list(getattr(self.dm.dataset, "classnames", None) or [])
        counts = [0] * max(self.num_classes, len(classnames))
        for item in self.dm.dataset.val or []:
            if 0 <= item.label < len(counts):
                counts[item.label] += 1
        need = self.min_val_per_class
        self.run_record["val_split"] = {"images": sum(counts), "classes": len(counts), "min_per_class": min(counts),
                                        "max_per_class": max(counts), "required_per_class": need}
        short = [i for i, n in enumerate(counts) if n < need]
        if not short:
            return
        name = lambda i: classnames[i] if i < len(classnames) else f"class {i}"  # noqa: E731
        shown = ", ".join(f"{name(i)} {counts[i]}" for i in short[:6]) + (f", ... (+{len(short) - 6} more)" if len(short) > 6 else "")
        chosen = " and ".join(what for what, _ in selections)
        off = [setting for _, setting in selections if setting]
        raise UserError(
            f"{self.cfg_trainer_name()} chooses {chosen} on the val split of {self.cfg.DATASET.NAME}, which needs at "
            f"least {need} image(s) per class; it has {sum(counts)} image(s) for {len(counts)} classes and "
            f"{len(short)} class(es) have fewer ({shown}). Fix: more shots (DATASET.NUM_SHOTS; the few-shot val "
            f"split keeps min(shots, 4) images per class), a dataset or split file with a val split for every "
            f"class, or a run without selection" + (f" ({'; '.join(off)})" if off else
                                                     " (another method, e.g. ZeroshotCLIP or CoOp)") + ".")

    def build_data_loader(self):
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    @property
    def test_loader(self):
        """The test loader, built when first read; while the split is sealed a read raises."""
        dataset = getattr(getattr(self, "dm", None), "dataset", None)
        if dataset is not None and getattr(dataset, "_test_sealed", ""):
            raise TestSplitSealed(dataset._test_sealed)
        if self._test_loader is None:
            self._test_loader = self.prepare_test_loader(self.dm.test_loader)
        return self._test_loader

    @test_loader.setter
    def test_loader(self, loader):
        self._test_loader = loader

    def prepare_test_loader(self, loader):
        """Hook: the loader the final evaluation reads (e.g. over cached features)."""
        return loader

    def export_subset(self):
        """Write the few-shot subset the dataset drew to OUTPUT_DIR/subset.jsonl (datasets that
        know how); returns its content hash, recorded in result.json."""
        export = getattr(getattr(getattr(self, "dm", None), "dataset", None), "export_subset", None)
        if export is None:
            return None
        mkdir_if_missing(self.output_dir)
        return export(osp.join(self.output_dir, SUBSET_FILE))

    def seal_test_split(self):
        dataset = getattr(getattr(self, "dm", None), "dataset", None)
        if dataset is not None and hasattr(dataset, "seal_test"):
            dataset.seal_test(sealed_message(self.cfg.TRAINER.NAME, self.protocol))

    def open_test_split(self):
        dataset = getattr(getattr(self, "dm", None), "dataset", None)
        if dataset is not None and hasattr(dataset, "unseal_test"):
            dataset.unseal_test()

    def build_model(self):
        raise NotImplementedError(f"{type(self).__name__} must define build_model() and register its modules")

    def precision_description(self):
        """Finds `TRAINER.<node>.PREC` of the running trainer (e.g. TRAINER.COOP.PREC)."""
        name = self.cfg.TRAINER.NAME
        for key, node in self.cfg.TRAINER.items():
            if hasattr(node, "get") and "PREC" in node and key.replace("_", "").lower() == name.replace("_", "").lower():
                return f"TRAINER.{key}.PREC={node.PREC}; with fp16, try fp32 or amp"
        return f"trainer {name} has no PREC setting"

    def train(self):
        self.check_val_selection()
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self):
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        if self.cfg.RESUME and not osp.isdir(self.cfg.RESUME):
            raise CheckpointError(f'--resume "{self.cfg.RESUME}" does not exist; point it at the output folder of '
                                  "an interrupted run, or drop --resume to train from scratch.")
        for folder in [self.output_dir] + [osp.join(self.output_dir, n) for n in self.get_model_names()]:
            for path in remove_stale_temp_files(folder):
                print(f"Removed {path}: the temp file of a write an earlier, killed run left behind")
        self.start_epoch = self.resume_model_if_exist(directory, required=bool(self.cfg.RESUME))
        self.last_save_time = time.time()
        self.init_writer(osp.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_train(self):
        self.remove_rolling_checkpoints(self.output_dir)
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.final_model == "best_val":
                print("Deploy the model with the best val performance")
                if self.best_epoch is not None:
                    self.run_record["best_val"] = {"epoch": self.best_epoch, "result": float(self.best_result)}
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.final_test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def after_epoch(self):
        last_epoch = (self.epoch + 1) == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0
        if not self.cfg.TEST.NO_TEST and self.final_model == "best_val":
            curr_result = self.test(split=self.selection_split)
            if curr_result > self.best_result:
                self.best_result, self.best_epoch = curr_result, self.epoch + 1
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
            self.last_save_time = time.time()
        elif self._rolling_checkpoint_due():
            # Last in after_epoch, like the kept checkpoint: the RNG state is the one the next
            # epoch starts from, so a resumed run equals an uninterrupted one.
            self.save_model(self.epoch, self.output_dir, keep=False)
            self.last_save_time = time.time()

    def _rolling_checkpoint_due(self):
        minutes = self.cfg.TRAIN.RESUME_EVERY_MINUTES
        return minutes >= 0 and time.time() - self.last_save_time >= minutes * 60

    @torch.no_grad()
    def test(self, split=None):
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            if split == "val" and self.protocol != ORACLE:
                raise TestSplitSealed(
                    f"{self.cfg.TRAINER.NAME} asked for the validation split, but this run has none "
                    f"(PROTOCOL {self.protocol or '(default)'}, dataset {self.cfg.DATASET.NAME}); Dassl "
                    "would silently use the test split instead. Use a protocol with a validation split "
                    "(PROTOCOL fsval or fullval), or TEST.FINAL_MODEL last_step.")
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch in tqdm(data_loader, desc=f"eval {split}", leave=False, mininterval=1.0):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        self.last_results = dict(results, split=split)
        return list(results.values())[0]

    def final_test(self):
        """The run's last evaluation: test, then write `result.json` (the run's done marker).
        Training and selection are over, so the test split opens here."""
        self.open_test_split()
        self.test()
        record = dict(self.last_results)
        record.update(trainer=self.cfg.TRAINER.NAME, dataset=self.cfg.DATASET.NAME,
                      num_shots=self.cfg.DATASET.NUM_SHOTS, seed=self.cfg.SEED,
                      backbone=self.cfg.MODEL.BACKBONE.NAME, epochs=self.epochs_trained(),
                      finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        record.update(self.run_details())
        write_json(record, osp.join(self.output_dir, RESULT_FILE))
        return record

    def count_trainable_params(self):
        """Parameters the run tunes (result.json `trainable_params`): those of the registered
        models that take gradients. A trainer that fits parameters another way overrides it."""
        return sum(p.numel() for model in self._models.values() for p in model.parameters() if p.requires_grad)

    def run_details(self):
        """What the run was and how it ran, kept beside its metrics: the launcher's request
        (method, config, variant, ...), the classes, the trainable parameters, the weights
        the backbone got, the feature pipeline, and what the trainer chose (`run_record`)."""
        backbone = self.cfg.MODEL.BACKBONE
        weights = backbone.get("PATH", "") or f"released weights of {backbone.NAME}"
        details = {
            "num_classes": getattr(self, "num_classes", None),
            "trainable_params": self.count_trainable_params(),
            "weights": weights if backbone.get("PRETRAINED", True) else "random",
            "pipeline": getattr(self, "pipeline", None),
            "protocol": self.protocol,
            "subset_hash": getattr(self, "subset_hash", None),
            "settings_hash": self.settings_hash(),
            "cost": self.run_cost(),
        }
        try:  # a damaged request file must not cost the finished run its result
            request = read_json(osp.join(self.output_dir, REQUEST_FILE))
        except (OSError, ValueError):
            request = None
        if isinstance(request, dict):
            details["request"] = request
            details.update({k: request[k] for k in ("method", "cfg", "variant") if k in request})
        details.update(getattr(self, "run_record", {}))
        return details

    def settings_hash(self):
        """sha256 of every config value that shapes what training computes (the method's preset
        after all overrides): two results with equal hashes ran the same settings."""
        settings = self.training_settings()
        if settings is None:
            return None
        text = "\n".join(f"{k}={settings[k]!r}" for k in sorted(settings) if k != "SEED")
        return hashlib.sha256(text.encode()).hexdigest()

    def run_cost(self):
        """Wall time since the trainer was built, peak memory of this process (host) and of
        the device, and the device's name: the cost columns of the tables (`--cost`)."""
        cuda = self.device.type == "cuda"
        return {
            "wall_s": round(time.time() - self.run_started, 2),
            "host_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "device_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
            "device": torch.cuda.get_device_name(self.device) if cuda else (platform.processor() or "cpu"),
        }

    def epochs_trained(self):
        """Epochs behind the evaluated model: 0 for a trainer that does not train, the loaded
        checkpoint's for an evaluation (None if it loaded nothing), else OPTIM.MAX_EPOCH."""
        if not self.trains:
            return 0
        if self.run_record.get("eval_only"):
            return self.run_record.get("loaded_epoch")
        return self.max_epoch

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None):
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Supervised training on `train_loader_x`, logging Dassl's per-batch line."""

    def run_epoch(self):
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            meet_freq = (self.batch_idx + 1) % self.cfg.TRAIN.PRINT_FREQ == 0
            only_few_batches = self.num_batches < self.cfg.TRAIN.PRINT_FREQ
            if meet_freq or only_few_batches:
                nb_remain = self.num_batches - self.batch_idx - 1
                nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
                print(" ".join([
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                    f"{losses}",
                    f"lr {self.get_current_lr():.4e}",
                    f"eta {eta}",
                ]))
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)
