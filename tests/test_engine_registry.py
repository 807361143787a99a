import pytest

from dassl.data.datasets import DATASET_REGISTRY, build_dataset
from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from dassl.utils import Registry


def test_duplicate_registration_is_refused():
    reg = Registry("TEST")

    @reg.register()
    class Foo:
        pass

    with pytest.raises(KeyError, match='"Foo" was already registered'):
        @reg.register()
        class Foo:  # noqa: F811
            pass


def test_unknown_trainer_lists_registered_names():
    @TRAINER_REGISTRY.register()
    class RegistryProbeTrainer(TrainerX):
        pass

    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "NoSuchTrainer"
    with pytest.raises(KeyError) as e:
        build_trainer(cfg)
    assert "NoSuchTrainer" in str(e.value) and "RegistryProbeTrainer" in str(e.value)


def test_unknown_dataset_lists_registered_names():
    cfg = get_cfg_default()
    cfg.DATASET.NAME = "NoSuchDataset"
    with pytest.raises(KeyError) as e:
        build_dataset(cfg)
    for name in DATASET_REGISTRY.registered_names():
        assert name in str(e.value)
    cfg.DATASET.NAME = ""
    with pytest.raises(ValueError, match="DATASET.NAME is empty"):
        build_dataset(cfg)
