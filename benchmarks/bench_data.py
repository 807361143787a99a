"""The benchmarks' data and model: class-coloured gratings drawn into a folder (read as
DATASET.NAME ImageFolder) and a CLIP of the asked architecture with random weights whose
BatchNorm statistics are set from separate images, so features differ between images."""
import colorsys
import os

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image

from trainers.common.clip_loader import CLIP_ARCHITECTURES, TOY_ARCHITECTURES

HUE_JITTER = 0.4  # hue std in units of the gap between two classes' hues
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # the configs' INPUT.PIXEL_MEAN/STD
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CALIBRATION_PER_CLASS = 8
SMALL_CLIP = TOY_ARCHITECTURES["small-rn"]
TINY_CLIP = TOY_ARCHITECTURES["tiny-rn"]


def write_gratings(folder, n_classes, per_class, size, seed=0):
    """`folder/pattern_XX/NNNN.jpg`: class c is a grating at angle c*180/n_classes degrees in
    hue c/n_classes; both are jittered and noise is added, so neighbouring classes overlap
    (random-weight CLIP features keep colour far better than orientation)."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for c in range(n_classes):
        os.makedirs(os.path.join(folder, f"pattern_{c:02d}"))
        for i in range(per_class):
            hue = (c / n_classes + rng.normal(0, HUE_JITTER / n_classes)) % 1.0
            colour = np.array(colorsys.hsv_to_rgb(hue, 0.7, 0.8))
            angle = np.pi * c / n_classes + rng.normal(0, 0.1)
            wave = np.sin(2 * np.pi * rng.uniform(3, 6) * (xx * np.cos(angle) + yy * np.sin(angle))
                          + rng.uniform(0, 2 * np.pi))
            pixels = colour + 0.2 * wave[..., None] + rng.normal(0, 0.15, (size, size, 3))
            Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(
                os.path.join(folder, f"pattern_{c:02d}", f"{i:04d}.jpg"), quality=90)
    return folder


def calibrate_batchnorm(visual, images):
    """Set BatchNorm running statistics from `images` (cumulative average, one pass).

    A random-weight CLIP with untouched statistics maps every image to nearly the same
    feature (cosine ~0.999), so nothing can be learned from it; with calibrated statistics
    features vary like a trained encoder's (cosine ~0.4 between images) and the methods learn.
    """
    batchnorms = [m for m in visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
    visual.train()
    with torch.no_grad():
        visual(images)
    visual.eval()
    for bn in batchnorms:
        bn.momentum = 0.1
    return len(batchnorms)


def clip_options(arch, tmp, calibration_folder):
    """Config overrides that give the trainers a random-weight CLIP of `arch`, saved like an
    official weights file after its BatchNorm statistics were calibrated on separate images."""
    from clip.model import CLIP

    from dassl.data.data_manager import read_image

    config = {"small": SMALL_CLIP, "tiny": TINY_CLIP}.get(arch) or CLIP_ARCHITECTURES[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIP(**config)
    size = config["image_resolution"]
    tfm = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(calibration_folder) for f in files)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    images = torch.stack([tfm(read_image(p)) for p in paths]).to(device)
    calibrated = calibrate_batchnorm(model.visual.to(device), images)
    path = os.path.join(tmp, "clip_random.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.cpu().state_dict().items()}, path)
    return ["MODEL.BACKBONE.NAME", arch, "MODEL.BACKBONE.PATH", path, "INPUT.SIZE", f"({size}, {size})"], calibrated
