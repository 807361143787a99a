"""Checks of a run's settings before anything is built or written: values that would
otherwise crash deep inside torch, or worse, run and produce a result nobody asked for."""
from .merge import ConfigError

FINAL_MODELS = ("last_step", "best_val")
TEST_SPLITS = ("test", "val")


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_run_settings(cfg, trains):
    """`trains`: this run will train (a trainer that learns, not --eval-only/--no-train)."""
    for key in ("DATALOADER.TRAIN_X.BATCH_SIZE", "DATALOADER.TEST.BATCH_SIZE", "TRAIN.PRINT_FREQ"):
        value = _get(cfg, key)
        if not _positive_int(value):
            raise ConfigError(f"{key} is {value!r}; it must be a whole number of at least 1.")
    if cfg.DATALOADER.NUM_WORKERS < 0:
        raise ConfigError(f"DATALOADER.NUM_WORKERS is {cfg.DATALOADER.NUM_WORKERS}; use 0 (load in the main "
                          "process) or more.")
    store_modes = ("auto", "memory", "disk", "off")
    if cfg.DATALOADER.IMAGE_STORE.MODE not in store_modes:
        raise ConfigError(f"DATALOADER.IMAGE_STORE.MODE is {cfg.DATALOADER.IMAGE_STORE.MODE!r}; use one of "
                          f"{', '.join(store_modes)}.")
    size = tuple(cfg.INPUT.SIZE)
    if len(size) != 2 or not all(_positive_int(s) for s in size):
        raise ConfigError(f"INPUT.SIZE is {size}; give two positive whole numbers, e.g. INPUT.SIZE \"(224, 224)\".")
    if cfg.TEST.FINAL_MODEL not in FINAL_MODELS:
        raise ConfigError(f"TEST.FINAL_MODEL is {cfg.TEST.FINAL_MODEL!r}; use one of {', '.join(FINAL_MODELS)}.")
    if cfg.TEST.SPLIT not in TEST_SPLITS:
        raise ConfigError(f"TEST.SPLIT is {cfg.TEST.SPLIT!r}; use one of {', '.join(TEST_SPLITS)}.")
    if not trains:
        return
    name = cfg.TRAINER.NAME
    if cfg.DATASET.NUM_SHOTS == 0:
        raise ConfigError(f"DATASET.NUM_SHOTS is 0, which would train {name} on the whole training set "
                          "without saying so. Set the shots per class (e.g. DATASET.NUM_SHOTS 16), or -1 to "
                          "train on every training image on purpose.")
    if cfg.OPTIM.MAX_EPOCH < 1:
        raise ConfigError(f"OPTIM.MAX_EPOCH is {cfg.OPTIM.MAX_EPOCH}: {name} would train nothing and still "
                          "write a finished result. Set OPTIM.MAX_EPOCH to 1 or more, or evaluate a trained "
                          "model with --eval-only --model-dir DIR.")
    if not cfg.OPTIM.LR > 0:
        raise ConfigError(f"OPTIM.LR is {cfg.OPTIM.LR}; the learning rate must be above 0.")
    if cfg.TRAIN.CHECKPOINT_FREQ < 0:
        raise ConfigError(f"TRAIN.CHECKPOINT_FREQ is {cfg.TRAIN.CHECKPOINT_FREQ}; use 0 (keep only the last "
                          "epoch) or a number of epochs.")


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node
