"""ImageNetV2 (matched frequency): 10k images in folders named by ImageNet label 0..999 (test only)."""
import os

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden

from .imagenet import imagenet_label_order, list_class_images, read_classnames
from .imagenet_variants import ImageNetVariant, find_classnames
from .split_files import DOCS, DatasetError, Record, Splits, join_rel


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_dir = "imagenetv2-matched-frequency-format-val"

    @classmethod
    def read_splits(cls, dataset_dir, may_write=True):
        """Folder str(y) holds label y (numeric order, not string order: "10" after "9")."""
        classnames = read_classnames(find_classnames(dataset_dir))
        wnids = imagenet_label_order(classnames)
        image_dir = os.path.join(dataset_dir, cls.image_dir)
        if not os.path.isdir(image_dir):
            raise DatasetError(f"Missing image folder {image_dir} (layout: {DOCS}, section ImageNetV2).")
        expected = [str(y) for y in range(len(wnids))]
        present = {f for f in listdir_nohidden(image_dir) if os.path.isdir(os.path.join(image_dir, f))}
        missing = [f for f in expected if f not in present]
        extra = sorted(present - set(expected))
        if missing or extra:
            raise DatasetError(f"ImageNetV2: {image_dir} must hold folders 0..{len(wnids) - 1} (one per class in "
                               f"classnames.txt); missing: {missing[:5]}, unexpected: {extra[:5]}.")
        lists = list_class_images(image_dir, expected, desc="Listing ImageNetV2")
        data = []
        for y, w in enumerate(wnids):
            prefix = join_rel(cls.image_dir, str(y)) + "/"
            data.extend(Record(prefix + f, y, classnames[w]) for f in lists[str(y)])
        return Splits([], None, data)
