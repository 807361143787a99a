"""Text-side classifiers: class names + templates -> class features, and CLIP's cosine logits."""
import torch
from tqdm import tqdm


def l2_normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


@torch.no_grad()
def class_features(clip_model, classnames, templates, replace_underscore=True,
                   normalize_each=True, normalize_output=True, batch_size=256):
    """Return fp32 class features [n_cls, D] from `clip_model.encode_text` (a Backbone).

    Every class name is formatted into every template; the T prompt features of a class are
    averaged (each one L2-normalised first when `normalize_each`), and the average is
    L2-normalised when `normalize_output`. Prompts are encoded `batch_size` at a time so
    1000 classes x 8 templates fit in memory.
    """
    if isinstance(templates, str):
        templates = [templates]
    names = [c.replace("_", " ") if replace_underscore else c for c in classnames]
    prompts = [t.format(name) for name in names for t in templates]  # class-major order
    tokens = clip_model.tokenize(prompts)
    device = next(clip_model.parameters()).device
    chunks = range(0, len(prompts), batch_size)
    features = []
    for start in tqdm(chunks, desc="Encoding class prompts", disable=len(chunks) < 2):
        features.append(clip_model.encode_text(tokens[start:start + batch_size].to(device)).float())
    features = torch.cat(features).view(len(names), len(templates), -1)
    if normalize_each:
        features = l2_normalize(features)
    features = features.mean(dim=1)
    return l2_normalize(features) if normalize_output else features


def cosine_logits(image_features, classifier, logit_scale):
    """CLIP's logits: exp(logit_scale) * cos(image, class), computed in fp32."""
    image_features = l2_normalize(image_features.float())
    classifier = l2_normalize(classifier.float())
    return logit_scale.exp().float() * image_features @ classifier.t()
