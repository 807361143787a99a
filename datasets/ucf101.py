"""UCF101 (middle frames): action names split at capitals and joined by "_"
(ApplyEyeMakeup -> Apply_Eye_Makeup), which is also the image folder name."""
import os
import re

from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset
from .split_files import DatasetError, Record, Splits, join_rel, read_lines, split_trainval


def action_name(camel):
    return "_".join(re.findall("[A-Z][^A-Z]*", camel))


@DATASET_REGISTRY.register()
class UCF101(SplitFileDataset):
    dataset_dir = "ucf101"
    image_dir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"

    @classmethod
    def build_split(cls, dataset_dir, rng):
        """ucfTrainTestlist/: classInd.txt ('1 ApplyEyeMakeup'), trainlist01 -> 80/20 train/val,
        testlist01 -> test; videos v_X.avi map to frames <Renamed_Action>/v_X.jpg."""
        lists = os.path.join(dataset_dir, "ucfTrainTestlist")
        cname2lab = {}
        for line in read_lines(os.path.join(lists, "classInd.txt"), "UCF101 class index"):
            label, action = line.split(" ")
            cname2lab[action] = int(label) - 1
        trainval = cls.read_list(os.path.join(lists, "trainlist01.txt"), cname2lab)
        test = cls.read_list(os.path.join(lists, "testlist01.txt"), cname2lab)
        train, val = split_trainval(trainval, rng)
        return Splits(train, val, test)

    @classmethod
    def read_list(cls, path, cname2lab):
        records = []
        for line in read_lines(path, "UCF101 split list"):
            action, filename = line.split(" ")[0].split("/")
            if action not in cname2lab:
                raise DatasetError(f"{path}: action '{action}' is not in classInd.txt.")
            renamed = action_name(action)
            frame = filename.replace(".avi", ".jpg")
            records.append(Record(join_rel(cls.image_dir, renamed, frame), cname2lab[action], renamed))
        return records
