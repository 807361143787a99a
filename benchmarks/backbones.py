"""The same OpenAI architectures through the `clip` package and through open_clip, side by side:
image-encoder throughput (images/s) and text-encoder time for every class prompt of a 1000-class
dataset ("a photo of a {name}."), random weights.

Both libraries run the same weights: the `clip` model's state dict is loaded into open_clip's
`*-quickgelu` config (the OpenAI activation), and the largest feature difference is printed, so
the comparison is between two implementations of one computation. Each model is timed after a
warm-up call; the best of `--repeats` timings counts. GPU: fp16 as the trainers run it (open_clip
with its own half-precision recipe); CPU: fp32.

    python -m benchmarks.backbones                                  # RN50 and ViT-B/16, 1000 classes
    python -m benchmarks.backbones --classes 100 --images 8 --repeats 1   # a short CPU run
"""
import argparse
import os
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.coop_text import class_names  # noqa: E402

PAIRS = {"RN50": "open_clip:RN50-quickgelu", "ViT-B/16": "open_clip:ViT-B-16-quickgelu"}


def _cfg(name, path):
    from dassl.config import get_cfg_default
    from trainers.config import extend_cfg
    cfg = extend_cfg(get_cfg_default())
    cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH = name, path
    return cfg


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _best_time(fn, device, repeats):
    with torch.no_grad():
        out = fn()  # warm-up (kernel choice, allocator)
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            out = fn()
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return best, out


def measure(arch, device, n_images, n_classes, repeats, batch_text, tmp):
    """{library: (images/s, text seconds)} and the max feature differences for one architecture."""
    from trainers.common.backbone import load_backbone
    from trainers.common.clip_loader import build_random_clip

    path = os.path.join(tmp, "weights.pt")
    torch.save({k: v.float() for k, v in build_random_clip(arch, seed=0).state_dict().items()}, path)
    prompts = [f"a photo of a {name}." for name in class_names(n_classes)]
    precision = "fp16" if device.type == "cuda" else "fp32"
    results, features = {}, {}
    for name in (arch, PAIRS[arch]):
        backbone = load_backbone(_cfg(name, path)).cast(precision).eval().to(device)
        size = backbone.preprocess.resolution
        images = torch.randn(n_images, 3, size, size, generator=torch.Generator().manual_seed(0))
        images = images.to(device, backbone.dtype)
        tokens = backbone.tokenize(prompts).to(device)

        def text():
            return torch.cat([backbone.encode_text(tokens[i:i + batch_text]) for i in range(0, len(tokens), batch_text)])

        image_s, image_out = _best_time(lambda: backbone.encode_image(images), device, repeats)
        text_s, text_out = _best_time(text, device, repeats)
        results[backbone.library] = (n_images / image_s, text_s)
        print(f"{arch:<10} {backbone.library:<10} {n_images / image_s:>10.1f} {text_s:>9.3f}", flush=True)
        features[backbone.library] = (image_out.float().cpu(), text_out.float().cpu())
        del backbone
    diffs = [(a - b).abs().max().item() for a, b in zip(features["clip"], features["open_clip"])]
    return results, diffs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--classes", type=int, default=1000, help="class prompts through the text encoder")
    parser.add_argument("--images", type=int, default=None, help="images per timed batch (GPU 256, CPU 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--text-batch", type=int, default=256, help="prompts per encode_text call")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_images = args.images or (256 if device.type == "cuda" else 16)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"Device: {where}; {n_images} images per batch, {args.classes} class prompts, best of {args.repeats}, "
          f"{'fp16' if device.type == 'cuda' else 'fp32'}; torch {torch.__version__}")
    header = f"{'model':<10} {'library':<10} {'images/s':>10} {'text s':>9}   ratio open_clip/clip (images/s, text time)"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            results, diffs = measure(arch, device, n_images, args.classes, args.repeats, args.text_batch, tmp)
            (c_ips, c_text), (o_ips, o_text) = results["clip"], results["open_clip"]
            print(f"{arch:<10} {'ratio':<10} {o_ips / c_ips:>10.2f} {o_text / c_text:>9.2f}   "
                  f"(max |feature difference|: image {diffs[0]:.2e}, text {diffs[1]:.2e})")


if __name__ == "__main__":
    main()
