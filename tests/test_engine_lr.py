"""The LR curve of every official config (cosine after one constant warmup epoch) and the other schedulers."""
import math

import pytest
import torch

from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler, build_optimizer


def _lrs(epochs, **optim):
    cfg = get_cfg_default().OPTIM
    for k, v in optim.items():
        cfg[k] = v
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, cfg)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs, opt, sched


OFFICIAL = dict(NAME="sgd", LR=2e-3, MAX_EPOCH=200, LR_SCHEDULER="cosine", WARMUP_EPOCH=1,
                WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)


def test_cosine_with_constant_warmup_matches_spec_numbers():
    lrs, _, _ = _lrs(200, **OFFICIAL)
    assert lrs[:4] == pytest.approx([1e-5, 2e-3, 1.99988e-3, 1.99951e-3], rel=1e-5)
    assert lrs[-1] == pytest.approx(4.9344e-7, rel=1e-4)
    for e in range(1, 200):
        assert lrs[e] == pytest.approx(2e-3 * (1 + math.cos(math.pi * (e - 1) / 200)) / 2, rel=1e-9, abs=1e-15)


def test_linear_warmup_ramps_from_min_lr_and_recount():
    lrs, _, _ = _lrs(6, NAME="sgd", LR=1.0, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=3,
                     WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5)
    assert lrs[:3] == pytest.approx([1e-5, 1 / 3, 2 / 3])
    assert lrs[3] == pytest.approx(1.0)
    no_recount, _, _ = _lrs(5, NAME="sgd", LR=1.0, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=2,
                            WARMUP_TYPE="constant", WARMUP_RECOUNT=False)
    # The successor starts counting at WARMUP_EPOCH=2, so its first step goes 2 -> 3. torch's
    # cosine is chainable (ratio of consecutive cosine factors applied to the current LR), as in Dassl.
    assert no_recount[2] == pytest.approx(1.0)
    assert no_recount[3] == pytest.approx((1 + math.cos(math.pi * 3 / 10)) / (1 + math.cos(math.pi * 2 / 10)))


def test_step_schedulers():
    lrs, _, _ = _lrs(5, NAME="sgd", LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.5)
    assert lrs == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    lrs, _, _ = _lrs(5, NAME="sgd", LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.1)
    assert lrs == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])


def test_warmup_scheduler_state_round_trips():
    _, opt, sched = _lrs(5, **OFFICIAL)
    state = sched.state_dict()
    _, opt2, sched2 = _lrs(0, **OFFICIAL)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(state)
    for _ in range(3):
        opt.step(); sched.step(); opt2.step(); sched2.step()
        assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"]


@pytest.mark.parametrize("name", ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"])
def test_all_optimizers_build(name):
    cfg = get_cfg_default().OPTIM
    cfg.NAME = name
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    assert opt.param_groups[0]["lr"] == cfg.LR and opt.param_groups[0]["weight_decay"] == 5e-4


def test_unknown_optimizer_and_scheduler_are_named():
    cfg = get_cfg_default().OPTIM
    cfg.NAME = "lion"
    with pytest.raises(ValueError, match='"lion"'):
        build_optimizer(torch.nn.Linear(2, 2), cfg)
    cfg.NAME = "sgd"
    cfg.LR_SCHEDULER = "poly"
    with pytest.raises(ValueError, match='"poly"'):
        build_lr_scheduler(build_optimizer(torch.nn.Linear(2, 2), cfg), cfg)
