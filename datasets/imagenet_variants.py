"""What the four ImageNet distribution-shift test sets share: ImageNet's class names and,
for ImageNet-A/R, the map from their 200 classes to the 1000 ImageNet labels."""
import os

from .base import BenchmarkDataset
from .imagenet import CLASSNAMES_FILE, class_folders, imagenet_label_order, list_class_images, read_classnames
from .split_files import DOCS, DatasetError, Record, Splits, join_rel


def find_classnames(dataset_dir):
    """The set's own classnames.txt, else the one of the imagenet folder beside it."""
    candidates = [os.path.join(dataset_dir, CLASSNAMES_FILE),
                  os.path.join(os.path.dirname(dataset_dir), "imagenet", CLASSNAMES_FILE)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DatasetError(f"No ImageNet class names: neither {candidates[0]} nor {candidates[1]} exists. "
                       f"Copy ImageNet's classnames.txt into {dataset_dir} (see {DOCS}).")


class ImageNetVariant(BenchmarkDataset):
    """Test-only set in wnid class folders under `image_dir` (labels = sorted wnids present)."""

    test_only = True
    verify_images = False  # lists come straight from directory listings
    image_dir = ""

    @classmethod
    def read_splits(cls, dataset_dir, may_write=True):
        path = find_classnames(dataset_dir)
        classnames = read_classnames(path)
        image_dir = os.path.join(dataset_dir, cls.image_dir)
        folders = class_folders(image_dir, classnames, path)
        lists = list_class_images(image_dir, folders, desc=f"Listing {cls.__name__}")
        data = []
        for label, w in enumerate(folders):
            prefix = join_rel(cls.image_dir, w) + "/"
            data.extend(Record(prefix + f, label, classnames[w]) for f in lists[w])
        return Splits([], None, data)


class ImageNetSubset(ImageNetVariant):
    """ImageNet-A/R: 200 of the 1000 classes, relabelled 0..199 in sorted-wnid order.

    Contract (the TaskRes trainer relies on it): `imagenet_classnames` lists the 1000 ImageNet
    names in ImageNet label order; `imagenet_class_indices[y]` is the ImageNet label of label y.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        path = find_classnames(self.dataset_dir)
        classnames = read_classnames(path)
        order = imagenet_label_order(classnames)
        index = {w: i for i, w in enumerate(order)}
        folders = class_folders(os.path.join(self.dataset_dir, self.image_dir), classnames, path)
        self.imagenet_classnames = [classnames[w] for w in order]
        self.imagenet_class_indices = [index[w] for w in folders]
        if len(folders) != self.num_classes:
            raise DatasetError(f"{type(self).__name__}: class folders changed while loading; run again.")
