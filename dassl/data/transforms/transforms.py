"""`build_transform(cfg, is_train=True, choices=None)` (Dassl API, the subset CLIP work uses).

Train: the chosen augmentations in Dassl's order (no Resize before a random crop). Test:
Resize(max(SIZE)) of the shorter side -> CenterCrop(SIZE) -> ToTensor -> Normalize.
"""
import torch
import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

from dassl.config.merge import ConfigError

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

AVAI_CHOICES = [
    "random_flip", "random_resized_crop", "normalize", "instance_norm", "random_crop",
    "random_translation", "center_crop", "cutout", "randaugment", "gaussian_noise",
    "colorjitter", "randomgrayscale", "gaussian_blur",
]


class Cutout:
    """Zero out `n_holes` random square patches of a tensor image."""

    def __init__(self, n_holes=1, length=16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img):
        h, w = img.shape[1:]
        mask = torch.ones(h, w)
        for _ in range(self.n_holes):
            y = int(torch.randint(h, (1,)))
            x = int(torch.randint(w, (1,)))
            y1, y2 = max(0, y - self.length // 2), min(h, y + self.length // 2)
            x1, x2 = max(0, x - self.length // 2), min(w, x + self.length // 2)
            mask[y1:y2, x1:x2] = 0
        return img * mask


class GaussianNoise:
    def __init__(self, mean=0, std=0.15, p=0.5):
        self.mean, self.std, self.p = mean, std, p

    def __call__(self, img):
        if torch.rand(1).item() > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


class InstanceNormalization:
    """Normalise each image by its own per-channel mean and std."""

    def __call__(self, img):
        c = img.shape[0]
        flat = img.view(c, -1)
        return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-8)).view_as(img)


class Random2DTranslation:
    """Upscale by 1/8 with probability p, then random-crop back to (height, width)."""

    def __init__(self, height, width, p=0.5, interpolation=InterpolationMode.BILINEAR):
        self.height, self.width, self.p, self.interpolation = height, width, p, interpolation

    def __call__(self, img):
        if torch.rand(1).item() > self.p:
            return T.functional.resize(img, [self.height, self.width], self.interpolation)
        new_w, new_h = int(round(self.width * 1.125)), int(round(self.height * 1.125))
        img = T.functional.resize(img, [new_h, new_w], self.interpolation)
        x = int(torch.randint(new_w - self.width + 1, (1,)))
        y = int(torch.randint(new_h - self.height + 1, (1,)))
        return T.functional.crop(img, y, x, self.height, self.width)


def build_transform(cfg, is_train=True, choices=None):
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    unknown = [c for c in choices if c not in AVAI_CHOICES]
    if unknown:
        raise ConfigError(f"INPUT.TRANSFORMS has unknown entries {unknown}; supported: {AVAI_CHOICES}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ConfigError(f'INPUT.INTERPOLATION "{cfg.INPUT.INTERPOLATION}" is not one of {list(INTERPOLATION_MODES)}')
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    build = _build_transform_train if is_train else _build_transform_test
    return build(cfg, choices, normalize)


def _build_transform_train(cfg, choices, normalize):
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    tfm = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        tfm.append(T.Resize(size, interpolation=interp))
    if "random_translation" in choices:
        tfm.append(Random2DTranslation(size[0], size[1], interpolation=interp))
    if "random_crop" in choices:
        tfm.append(T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        tfm.append(T.RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interp))
    if "center_crop" in choices:
        tfm.append(T.CenterCrop(size))
    if "random_flip" in choices:
        tfm.append(T.RandomHorizontalFlip())
    if "randaugment" in choices:
        tfm.append(T.RandAugment(cfg.INPUT.RANDAUGMENT_N, cfg.INPUT.RANDAUGMENT_M))
    if "colorjitter" in choices:
        tfm.append(T.ColorJitter(cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C,
                                 cfg.INPUT.COLORJITTER_S, cfg.INPUT.COLORJITTER_H))
    if "randomgrayscale" in choices:
        tfm.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        tfm.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    tfm.append(T.ToTensor())
    if "cutout" in choices:
        tfm.append(Cutout(cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN))
    if "normalize" in choices:
        tfm.append(normalize)
    if "gaussian_noise" in choices:
        tfm.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        tfm.append(InstanceNormalization())
    return T.Compose(tfm)


RESIZE_MODES = ("shortest", "squash")


def _build_transform_test(cfg, choices, normalize):
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    size = tuple(cfg.INPUT.SIZE)
    mode = cfg.INPUT.get("RESIZE_MODE", "shortest")
    if mode not in RESIZE_MODES:
        raise ConfigError(f'INPUT.RESIZE_MODE "{mode}" is not one of {list(RESIZE_MODES)}')
    if mode == "squash":
        tfm = [T.Resize(size, interpolation=interp), T.ToTensor()]
    else:
        tfm = [T.Resize(max(size), interpolation=interp), T.CenterCrop(size), T.ToTensor()]
    if "normalize" in choices:
        tfm.append(normalize)
    if "instance_norm" in choices:
        tfm.append(InstanceNormalization())
    return T.Compose(tfm)
