"""In-process checks of inputs (fast): int values for float keys, split-file labels, and the
architecture a CLIP state dict holds."""
import pytest
import torch
from clip.model import CLIP

from dassl.config import get_cfg_default, merge_from_list
from dassl.config.merge import ConfigError
from datasets.split_files import DatasetError, Record, Splits, check_labels
from trainers.common.clip_loader import CLIP_ARCHITECTURES, TOY_ARCHITECTURES, architecture_of


def test_whole_number_for_a_float_key_is_taken_as_a_float():
    cfg = get_cfg_default()
    merge_from_list(cfg, ["OPTIM.LR", "1", "TRAIN.RESUME_EVERY_MINUTES", "0"])
    assert cfg.OPTIM.LR == 1.0 and isinstance(cfg.OPTIM.LR, float) and cfg.TRAIN.RESUME_EVERY_MINUTES == 0.0
    with pytest.raises(ConfigError, match='Bad value for "OPTIM.LR".*fast'):
        merge_from_list(cfg, ["OPTIM.LR", "fast"])


def _splits(train, val=(), test=()):
    as_records = lambda items: [Record(f"img{i}.jpg", y, c) for i, (y, c) in enumerate(items)]  # noqa: E731
    return Splits(as_records(train), as_records(val), as_records(test))


def test_split_labels_must_be_the_train_classes_with_one_name_each():
    check_labels(_splits([(0, "a"), (1, "b")], [(1, "b")], [(0, "a")]), "ok")
    with pytest.raises(DatasetError, match=r'F: "test" entry 0 \(img0.jpg\) has label 2, outside the 2 classes'):
        check_labels(_splits([(0, "a"), (1, "b")], test=[(2, "c")]), "F")
    with pytest.raises(DatasetError, match=r'"train" entry 1 \(img1.jpg\) has label 5, outside the 2 classes'):
        check_labels(_splits([(0, "a"), (5, "b")]), "F")  # a gap in the train labels
    with pytest.raises(DatasetError, match='label 1 is "b" in "train" entry 1 but "B" in "val" entry 0'):
        check_labels(_splits([(0, "a"), (1, "b")], val=[(1, "B")]), "F")
    with pytest.raises(DatasetError, match='class "a" has label 0 in "train" entry 0 but 1 in "train" entry 1'):
        check_labels(_splits([(0, "a"), (1, "a")]), "F")


@pytest.mark.parametrize("name", [*CLIP_ARCHITECTURES, *TOY_ARCHITECTURES])
def test_architecture_is_read_from_the_state_dict(name):
    arch = {**CLIP_ARCHITECTURES, **TOY_ARCHITECTURES}[name]
    with torch.device("meta"):  # shapes only: no memory for the large models
        state_dict = CLIP(**arch).state_dict()
    assert architecture_of(state_dict) == name
    assert architecture_of({"text_projection": torch.zeros(2, 2)}) is None
