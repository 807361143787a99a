"""The feature cache as a frozen-CLIP trainer uses it (`TRAIN.FEATURE_CACHE.PIPELINE`, see
`feature_cache.resolve_pipeline`): its image loaders replaced by loaders over cached features
with the same batches."""
import contextlib
import os

from torch.utils.data import SequentialSampler

from dassl.data.data_manager import UnreadableImage
from dassl.utils.errors import UserError

from .feature_cache import PIPELINES, FeatureSet, cache_root, encoder_fingerprint, loader_like
from .feature_views import describe_transform


def _split_file(dataset):
    """The file that lists the dataset's images (its path when it is one file), for messages."""
    source = dataset.split_source() if hasattr(dataset, "split_source") else "the split file"
    path = os.path.join(getattr(dataset, "dataset_dir", ""), source)
    return path if os.path.isfile(path) else source


def _uncacheable_reason(loader):
    """Why `loader`'s batches cannot be replayed exactly from the cache, or None."""
    if not isinstance(loader.sampler, SequentialSampler):
        return f"its sampler is {type(loader.sampler).__name__}, not SequentialSampler"
    dataset = loader.dataset
    if not hasattr(dataset, "data_source"):
        return f"its dataset {type(dataset).__name__} has no data_source"
    if isinstance(getattr(dataset, "transform", None), (list, tuple)):
        return "it applies several transforms per image"
    return None


def _loader_transform_text(loader):
    """The settings that turn a file into the image tensor of `loader` (wrapper and transform)."""
    dataset = loader.dataset
    transform = dataset.transform if dataset.transform is not None else getattr(dataset, "to_tensor", None)
    return f"{type(dataset).__module__}.{type(dataset).__qualname__}: {describe_transform(transform)}"


class TrainerFeatureCache:
    """The cache as a frozen-CLIP trainer uses it: image loaders are replaced by loaders over
    cached features with the same batches, computed with the trainer's own encoder call
    (`trainer.image_features`), so they are what it would compute."""

    def __init__(self, trainer, pipeline):
        cfg = trainer.cfg
        self.pipeline = pipeline
        self.views = pipeline["views"]
        self.root = cache_root(cfg.TRAIN.FEATURE_CACHE.ROOT)
        backbone = trainer.clip_model
        extra = None  # open_clip backbones: the library and preprocessing are part of the key
        if backbone.library != "clip":
            extra = {"library": backbone.library, "preprocess": [*backbone.preprocess, backbone.resize_mode]}
        self.encoder = encoder_fingerprint(backbone.visual, cfg.MODEL.BACKBONE.NAME, trainer.device, extra)
        self.train_set = None
        if pipeline["name"] == "fast":
            run_seed = cfg.SEED if pipeline["views_per_seed"] else None
            self.train_set = FeatureSet(self.root, self.encoder, trainer.dm.tfm_train, views=self.views,
                                        run_seed=run_seed)
        self._encode = lambda images: trainer.image_features(images.to(trainer.device))
        self._dataset = trainer.dm.dataset
        self._batch_size = cfg.DATALOADER.TEST.BATCH_SIZE
        self._workers = cfg.DATALOADER.NUM_WORKERS
        if pipeline["name"] == "fast":
            order = (f"epoch e reads view e % {self.views}" if pipeline["view_order"] == "cycle" else
                     "each epoch reads a random view of each image")
            drawn = "drawn for this seed" if pipeline["views_per_seed"] else "the same in every seed"
            training = (f"training on {self.views} cached augmented view(s) per image ({drawn}), {order} "
                        f"(faster; not the reference's numbers)")
        else:
            training = "training images through the image encoder at every step with fresh augmentations"
        print(f"Pipeline {pipeline['name']}: test/val features cached under {self.root} (encoded in the "
              f"test loader's own batches: identical to encoding them at test time); {training}. "
              f"TRAIN.FEATURE_CACHE.PIPELINE chooses: {', '.join(PIPELINES)}")

    @contextlib.contextmanager
    def _naming_the_split_file(self):
        """An image the cache cannot read becomes one message naming it and the file listing it."""
        try:
            yield
        except UnreadableImage as err:
            raise UserError(f'Feature cache: cannot read image "{err.path}" ({err.reason}); it is listed in '
                            f"{_split_file(self._dataset)}. Restore the file, or remove its entry from that "
                            f"file.") from err

    def eval_loader(self, reference, split):
        """Loader of exact cached features in place of the `split` image loader (or the image
        loader itself, with a line saying why, when its batches cannot be replayed)."""
        reason = _uncacheable_reason(reference)
        if reason is not None:
            print(f"Feature cache: {split} images not cached ({reason}); they go through the encoder")
            return reference
        feature_set = FeatureSet(self.root, self.encoder, None, views=1, rows="reference-batches",
                                 transform_text=_loader_transform_text(reference))
        with self._naming_the_split_file():
            features = feature_set.load_reference_batches(reference, self._encode, split)
        return loader_like(reference, features, reference.dataset.data_source)

    def train_loader(self, reference):
        """Loader of cached training views in place of the training image loader ("fast")."""
        items = reference.dataset.data_source
        with self._naming_the_split_file():
            features = self.train_set.load([item.impath for item in items], self._encode, self._batch_size,
                                           self._workers, desc="train")
        return loader_like(reference, features, items)
