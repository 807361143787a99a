"""Config keys the CLIP methods add to the engine's defaults (one place for all of them).

`train.py` calls `extend_cfg(cfg)` on `get_cfg_default()` before merging any file, so
every key below may appear in a YAML file or as a command-line override.
"""
from yacs.config import CfgNode as CN


def extend_cfg(cfg):
    cfg.MODEL.BACKBONE.PATH = ""  # explicit CLIP weights file; "" = resolve by name

    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32 or amp
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end, middle or front
    cfg.TRAINER.COOP.TRUNCATE_TEXT = True  # text transformer stops at the longest EOT (exact, faster)
    cfg.TRAINER.COOP.GRAD_CHECKPOINT = False  # recompute text blocks in backward (huge class counts)

    cfg.TRAINER.TaskRes = CN()
    cfg.TRAINER.TaskRes.N_CTX = 16  # vestigial CoOp keys, kept so reference configs load
    cfg.TRAINER.TaskRes.CSC = False
    cfg.TRAINER.TaskRes.CTX_INIT = ""
    cfg.TRAINER.TaskRes.CLASS_TOKEN_POSITION = "end"
    cfg.TRAINER.TaskRes.PREC = "fp16"
    cfg.TRAINER.TaskRes.RESIDUAL_SCALE = 1.0
    cfg.TRAINER.TaskRes.ENHANCED_BASE = "none"

    cfg.TRAINER.CLIP_ADAPTER = CN()
    cfg.TRAINER.CLIP_ADAPTER.RATIO = 0.2  # weight of the adapted feature in the residual mix
    cfg.TRAINER.CLIP_ADAPTER.REDUCTION = 4  # hidden width = D // REDUCTION
    return cfg
