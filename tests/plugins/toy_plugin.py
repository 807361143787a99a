"""A Dassl-style plugin used by the engine tests: a folder dataset and a linear trainer.

Written exactly as third-party Dassl code would be (only dassl imports), and loaded by
`train.py --plugin tests/plugins/toy_plugin.py`.
"""
import os
import os.path as osp
import signal

import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import listdir_nohidden


def extend_cfg(cfg):
    cfg.TRAINER.TOY = CN()
    cfg.TRAINER.TOY.PREC = "fp32"
    cfg.TRAINER.TOY.LOSS_SCALE = 1.0  # 1e400 (= inf) makes the loss non-finite


@DATASET_REGISTRY.register()
class ToyFolder(DatasetBase):
    """ROOT/toy/{train,test}/<class>/<image>: labels in sorted class-folder order."""

    dataset_dir = "toy"

    def __init__(self, cfg):
        root = osp.join(osp.abspath(osp.expanduser(cfg.DATASET.ROOT)), self.dataset_dir)
        train = self._read(osp.join(root, "train"))
        test = self._read(osp.join(root, "test"))
        train = self.generate_fewshot_dataset(train, num_shots=cfg.DATASET.NUM_SHOTS)
        super().__init__(train_x=train, val=test, test=test)

    @staticmethod
    def _read(split_dir):
        items = []
        for label, cname in enumerate(listdir_nohidden(split_dir, sort=True)):
            for fname in listdir_nohidden(osp.join(split_dir, cname), sort=True):
                items.append(Datum(impath=osp.join(split_dir, cname, fname), label=label, classname=cname))
        return items


@TRAINER_REGISTRY.register()
class Toy(TrainerX):
    """Linear classifier on 8x8 pixels; steps the LR once per epoch like the CLIP trainers."""

    def build_model(self):
        size = self.cfg.INPUT.SIZE
        self.model = nn.Linear(3 * size[0] * size[1], self.num_classes).to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def model_inference(self, input):
        return self.model(input.flatten(1))

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model_inference(image)
        loss = F.cross_entropy(output, label) * self.cfg.TRAINER.TOY.LOSS_SCALE
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}

    def after_epoch(self):
        super().after_epoch()
        # An environment variable, not a config key: the resumed run must have the same settings.
        if self.epoch + 1 == int(os.environ.get("TOY_KILL_AFTER_EPOCH", "-1")):
            os.kill(os.getpid(), signal.SIGKILL)
