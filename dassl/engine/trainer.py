"""Trainer base classes (Dassl `dassl.engine.trainer` API).

Hook order: `train()` = before_train -> per epoch (before_epoch, run_epoch, after_epoch) ->
after_train. Only modules passed to `register_model` are saved, loaded, switched between
train/eval mode and stepped, which is how CLIP methods keep the frozen encoders out of it.
"""
import datetime
import logging
import os.path as osp
import time
from collections import OrderedDict

import numpy as np
import torch
from tqdm import tqdm

from dassl.data import DataManager
from dassl.evaluation import build_evaluator
from dassl.utils import AverageMeter, MetricMeter, mkdir_if_missing
from dassl.utils.errors import CheckpointError, TestSplitSealed
from dassl.utils.tools import remove_stale_temp_files

from .checkpointing import CheckpointingMixin
from .protocol import ORACLE, check_val_split, sealed_message
from .run_result import RunResultMixin

SUBSET_FILE = "subset.jsonl"  # the few-shot train/val images of the run, written by its dataset


class TrainerBase(CheckpointingMixin):
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


class SimpleTrainer(RunResultMixin, TrainerBase):
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
        if selections:
            self.run_record["val_split"] = check_val_split(
                self.dm.dataset, self.num_classes, self.min_val_per_class, selections, self.cfg_trainer_name(),
                self.cfg.DATASET.NAME)

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
