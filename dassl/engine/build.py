from dassl.utils import Registry

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
