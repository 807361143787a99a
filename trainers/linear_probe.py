"""Linear-probe CLIP, CoOp's `lpclip` protocol.

Logistic regression (scikit-learn, lbfgs, max_iter 1000, L2) on frozen, unnormalised image
features computed with the test transform. C is chosen on the few-shot validation split
(min(K, 4) images per class) exactly as the official script searches it: the best of
1e6, 1e4, ..., 1e-6, then SEARCH_STEPS rounds of a binary search in log10(C) between 0.1x
and 10x that value (each round fits both ends, keeps the better one, ties to the left end,
and halves the interval toward it); the classifier of the last round is the result.
Differences from the official script: it draws its own few-shot subsets from precomputed
features; here the toolkit's own subsets are used, the same images as every other method for a
seed. The fitted classifier is saved as a linear layer (`linear_probe/`), so --eval-only works.
"""
import random

import numpy as np
import torch
import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY
from dassl.utils.errors import UserError

from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import Method, backbone_option, register_method, rn50_prefix_replaced
from trainers.common.precision import effective_precision
from trainers.common.run_record import RunRecordMixin
from trainers.common.split_features import eval_split_features, test_transform_features

COARSE_C = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)


def _logistic_regression_class():
    """scikit-learn's LogisticRegression, imported on first use: importing scikit-learn (with
    scipy, pandas and rich) costs every train.py start over a second, and rich draws from
    Python's global random generator as it loads, so the seeded state is restored around it."""
    state = random.getstate()
    from sklearn.linear_model import LogisticRegression
    random.setstate(state)
    return LogisticRegression


def fit_logistic_regression(features, labels, c, max_iter=1000):
    # float64: given float32 features, lbfgs runs its loss and gradient in float32, and the
    # rounding of the CPU's kernels then moves the chosen C and a few test predictions
    # between CPU types (tests/accuracy_golden.json notes the measurement).
    return _logistic_regression_class()(solver="lbfgs", max_iter=max_iter, C=c).fit(np.asarray(features, np.float64), labels)


def search_c(train, val, steps=8, max_iter=1000):
    """(fitted classifier, chosen C, search record) with the official two-stage search, fitted in float64.

    `train` and `val` are (features, labels) numpy pairs; the test split is never seen."""
    def val_accuracy(c):
        clf = fit_logistic_regression(*train, c, max_iter)
        return clf, float(np.mean(clf.predict(np.asarray(val[0], np.float64)) == val[1]))

    coarse = [val_accuracy(c)[1] for c in COARSE_C]
    peak = COARSE_C[int(np.argmax(coarse))]
    c_left, c_right = 1e-1 * peak, 1e1 * peak
    rounds = []
    clf, chosen = None, peak
    for _ in range(steps):
        (clf_left, acc_left), (clf_right, acc_right) = val_accuracy(c_left), val_accuracy(c_right)
        middle = 0.5 * (np.log10(c_left) + np.log10(c_right))
        if acc_left < acc_right:
            clf, chosen = clf_right, c_right
            c_left, c_right = np.power(10, middle), np.power(10, np.log10(c_right))
        else:
            clf, chosen = clf_left, c_left
            c_left, c_right = np.power(10, np.log10(c_left)), np.power(10, middle)
        rounds.append({"C": float(chosen), "val_accuracy": max(acc_left, acc_right)})
    if clf is None:  # no binary-search round asked for: the coarse peak
        clf = val_accuracy(peak)[0]
    record = {"split": "val", "images": len(val[1]), "coarse": dict(zip(map(str, COARSE_C), coarse)),
              "rounds": rounds}
    return clf, float(chosen), record


def classifier_as_linear(clf, n_classes):
    """scikit-learn's decision function as weight [C, D] and bias [C] (argmax = clf.predict)."""
    coef, intercept = np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)
    if len(clf.classes_) == 2:  # binary: one decision value z; logits (-z/2, z/2) give the same argmax
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, -1e4)  # a class absent from the training set is never predicted
    weight[clf.classes_], bias[clf.classes_] = coef, intercept
    return torch.from_numpy(weight), torch.from_numpy(bias)


@TRAINER_REGISTRY.register()
class LinearProbeCLIP(RunRecordMixin, FrozenCLIPTrainer):
    """Logistic regression on frozen CLIP image features; nothing is gradient-trained."""

    def check_cfg(self, cfg):
        if cfg.DATASET.NUM_SHOTS < 1:
            raise UserError("LinearProbeCLIP fits on the few-shot training set: set DATASET.NUM_SHOTS "
                            "(e.g. DATASET.NUM_SHOTS 16)")
        if cfg.TRAINER.LINEAR_PROBE.SEARCH_STEPS < 0:
            raise UserError(f"TRAINER.LINEAR_PROBE.SEARCH_STEPS = {cfg.TRAINER.LINEAR_PROBE.SEARCH_STEPS}; "
                            f"use 0 or more (8 is the official search)")

    def build_model(self):
        precision = effective_precision("fp16", self.device, key="linear-probe CLIP precision")
        self.clip_model = self.freeze_on_device(self.load_clip(), precision)
        dim = self.clip_model.embed_dim
        # float64 like the fit: the test argmax is scikit-learn's own decision, not a float32 rounding of it
        self.head = nn.Linear(dim, self.num_classes, dtype=torch.float64).to(self.device)
        self.head.requires_grad_(False)
        self.register_model("linear_probe", self.head)

    def count_trainable_params(self):
        return self.head.weight.numel() + self.head.bias.numel()  # fitted by scikit-learn, not by gradients

    def logits(self, image_features):
        return self.head(image_features.double())

    def val_selections(self):
        return [("C of the logistic regression", None)]

    def train(self):
        self.check_val_selection()
        node = self.cfg.TRAINER.LINEAR_PROBE
        self.set_model_mode("eval")
        train = [t.cpu().numpy() for t in test_transform_features(self, self.dm.dataset.train_x, "train")]
        val = [t.cpu().numpy() for t in eval_split_features(self, "val")]
        clf, chosen, record = search_c(train, val, node.SEARCH_STEPS, node.MAX_ITER)
        record["split"] = getattr(self.dm.dataset, "val_source", None) or "val"
        print(f"Linear probe: C = {chosen:.6g} chosen on the {record['split']} ({len(val[1])} images, "
              f"{len(COARSE_C)} coarse values + {node.SEARCH_STEPS} binary-search steps)")
        weight, bias = classifier_as_linear(clf, self.num_classes)
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)
        self.run_record.update(search=record, C=chosen)
        self.save_model(0, self.output_dir, is_best=True)  # --eval-only finds it with or without --load-epoch
        self.final_test()


register_method(Method(name="linear_probe", trainer="LinearProbeCLIP", label="Linear-probe CLIP",
                       config=lambda dataset, shots: "rn50",
                       options={"BACKBONE": backbone_option(rn50_prefix_replaced)},
                       protocols=("fsval", "fullval"), new_classes=False))
