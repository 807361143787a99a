"""`build_optimizer(model, optim_cfg, param_groups=None)` (Dassl API)."""
import warnings

import torch
import torch.nn as nn

from dassl.config.merge import ConfigError

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def build_optimizer(model, optim_cfg, param_groups=None):
    """`model` is an nn.Module or an iterable of parameters / parameter groups."""
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ConfigError(f'OPTIM.NAME "{name}" is not supported; choose one of {AVAI_OPTIMS}')
    lr = optim_cfg.LR
    wd = optim_cfg.WEIGHT_DECAY

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn("OPTIM.STAGED_LR is ignored because param_groups were given")
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(model, optim_cfg)
        elif isinstance(model, nn.Module):
            param_groups = model.parameters()
        else:
            param_groups = model

    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas)
    if name == "amsgrad":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=True)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    if name == "rmsprop":
        return torch.optim.RMSprop(param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    if name == "radam":
        return torch.optim.RAdam(param_groups, lr=lr, weight_decay=wd, betas=betas)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)


def _staged_param_groups(model, optim_cfg):
    """New layers train at LR, the rest at LR * BASE_LR_MULT."""
    if not isinstance(model, nn.Module):
        raise TypeError("OPTIM.STAGED_LR needs an nn.Module, not a parameter list")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        raise ConfigError("OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty")
    base, new = [], []
    for name, module in model.named_children():
        (new if name in new_layers else base).extend(module.parameters())
    return [{"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new}]
