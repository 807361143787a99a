"""ProKeR: proximal kernel ridge regression toward zero-shot CLIP in an RKHS.

Paper: Y. Bendou, A. Ouasfi, V. Gripon, A. Boukhayma, "ProKeR: A Kernel Perspective on
Few-Shot Adaptation of Large Vision-Language Models", CVPR 2025.
Official repository: github.com/ybendou/ProKeR. No snapshot of it could be fetched here; the
code read is its public fork github.com/omarnust/BReg-Adapter at
c89ce5467e101f966fc77154c46e8ab8fef6a571, whose trainers/proker.py, main.py, utils.py and
configs/RN50/configs_proker/ are ProKeR's (README and pipeline of the ProKeR paper).

Method (the training-free ProKeR of trainers/proker.py): support S = AUGMENT views (10) of
every few-shot training image with the Tip-Adapter training augmentation, each normalised
and kept as its own point; Y their one-hot labels; T the normalised text classifier (the
Tip-Adapter templates). Kernel k(x, y) = exp(-beta * (1 - x.y)). The regressor is the
zero-shot predictor plus a kernel expansion fitted to its residual,
    f(x) = x @ T' + k(x, S) @ A,   A = (K_SS / lambda + I)^-1 (Y - S @ T'),
(note: the text logits are not scaled by 100 here, as in the official code). beta and lambda
are chosen on the few-shot validation split (min(K, 4) images per class, as the official
`pre_load_features(..., n_shots=K)`) over torch.linspace grids per dataset
(configs/RN50/configs_proker/<dataset>.yaml, `GRIDS` below), the first strictly best pair in
beta-major order.

ImageNet: the official grid file's active grid is marked "epoch 1", and 10 views of 16,000
images would need a 160,000^2 kernel, so ImageNet uses one view without augmentation
(official `train_tranform_clean`: resize 256 + center crop; here the test transform,
resize 224 + center crop). Its official hyperparameters are loaded from
hyperparameters.json, chosen beforehand on ImageNet's test split; here they are searched on
the few-shot validation split like every other dataset (`IMAGENET_TEST_SELECTED` keeps the
official values for reference; TRAINER.PROKER.BETA / LAMBDA fix any pair).

The solve: per beta one symmetric eigendecomposition K = U diag(s) U' (float64 when it fits the
memory limit, else float32), then every lambda costs two matrix products:
A = U diag(lambda / (s + lambda)) U' R. Mathematically the official torch.linalg.solve; in
floating point not bit for bit. Memory guard: the solve needs about 4 n^2 numbers (kernel,
eigenvectors, LAPACK workspace) for n support points; when that exceeds
TRAINER.CACHED.MEMORY_LIMIT_GIB (24) even in float32, the run stops before computing any
kernel, with the size it needs. ImageNet 16 shots (n = 16,000) needs about 8.3 GiB in float64.

Published numbers: not recorded here. The paper's tables (arXiv 2501.11175) could not be read
from this machine; the official repository (ybendou/ProKeR) holds the project page, whose
results are images, and the code history's README lists none. `PUBLISHED` is empty and the
tables show no published column for ProKeR; fill it from the paper's RN50 and ViT-B/16 tables.
"""
import torch

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from dassl.utils.errors import UserError

from trainers.common.cached_methods import (IMAGENET_FAMILY, CachedFeatureTrainer, format_gib, kernel_solve_bytes)
from trainers.common.classifier import l2_normalize
from trainers.common.experiment import Method, backbone_option, register_method

AUGMENT_VIEWS = 10
# (beta low, beta high, beta steps), (lambda low, lambda high, lambda steps): torch.linspace grids
# of configs/RN50/configs_proker/<dataset>.yaml.
GRIDS = {
    "Caltech101": ((0.5, 3, 20), (0.001, 1, 10)),
    "DescribableTextures": ((0.1, 10, 20), (0.001, 10, 100)),
    "EuroSAT": ((0.5, 3, 20), (0.001, 1, 100)),
    "FGVCAircraft": ((0.5, 3, 20), (0.001, 1, 10)),
    "Food101": ((0.5, 3, 20), (0.001, 1, 10)),
    "ImageNet": ((1.5, 3, 10), (0.05, 0.25, 10)),
    "OxfordFlowers": ((0.1, 10, 20), (0.001, 10, 100)),
    "OxfordPets": ((0.01, 5, 40), (0.01, 0.3, 20)),
    "StanfordCars": ((0.1, 10, 5), (0.01, 1, 5)),
    "SUN397": ((0.1, 10, 20), (0.01, 10, 10)),
    "UCF101": ((0.5, 3, 20), (0.001, 1, 10)),
}
FALLBACK_GRID = "Caltech101"  # datasets without an official grid (the demo, the user's own folders)
# Official ImageNet values per shot count (configs/RN50/configs_proker/hyperparameters.json),
# selected on ImageNet's test split: kept for reference only, never used by default.
IMAGENET_TEST_SELECTED = {1: (3.0, 0.05), 2: (2.6, 0.05), 4: (1.5, 0.05), 8: (1.66, 0.07), 16: (1.7, 0.1)}
PUBLISHED = {"source": "not recorded (paper tables not read here)"}


def grid_of(dataset):
    source = "ImageNet" if dataset in IMAGENET_FAMILY else dataset
    source = source if source in GRIDS else FALLBACK_GRID
    (b0, b1, nb), (l0, l1, nl) = GRIDS[source]
    return torch.linspace(b0, b1, nb).tolist(), torch.linspace(l0, l1, nl).tolist(), source


def rbf_kernel(x, y, beta, chunk=4096):
    """exp(-beta * (1 - x @ y')) for normalised rows, built in row chunks (peak memory: the output)."""
    out = torch.empty(x.shape[0], y.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        block = out[start:start + chunk]
        torch.matmul(x[start:start + chunk], y.T, out=block)
        block.sub_(1).mul_(beta).exp_()
    return out


def solve_dtype(n_support, n_query, n_classes, limit_bytes):
    """float64 when the solve fits the limit, else float32, else None."""
    for dtype in (torch.float64, torch.float32):
        if kernel_solve_bytes(n_support, dtype.itemsize, n_query, n_classes) <= limit_bytes:
            return dtype
    return None


class KernelSolver:
    """(K_SS / lambda + I)^-1 R for many lambdas from one eigendecomposition of K_SS."""

    def __init__(self, support, beta):
        kernel = rbf_kernel(support, support, beta)
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(kernel)
        del kernel
        self.eigenvalues.clamp_(min=0)  # a PSD kernel; rounding can leave tiny negatives

    def coefficients(self, residual, lmbda):
        """A = U diag(lambda / (s + lambda)) U' R = (K / lambda + I)^-1 R."""
        projected = self.eigenvectors.T @ residual
        projected *= (lmbda / (self.eigenvalues + lmbda)).unsqueeze(1)
        return self.eigenvectors @ projected


@torch.no_grad()
def proker_search(support, onehot, text, val, val_labels, betas, lambdas):
    """(beta, lambda, val accuracy, number of pairs tried) over the grid, beta-major, first best."""
    residual = onehot - support @ text.T
    val_text = val @ text.T
    best = (0.0, betas[0], lambdas[0])
    for beta in betas:
        solver = KernelSolver(support, beta)
        cross = rbf_kernel(val, support, beta)
        for lmbda in lambdas:
            logits = val_text + cross @ solver.coefficients(residual, lmbda)
            acc = compute_accuracy(logits, val_labels)[0].item()
            if acc > best[0]:
                best = (acc, beta, lmbda)
        del solver, cross
    return best[1], best[2], best[0], len(betas) * len(lambdas)


@torch.no_grad()
def proker_fit(support, onehot, text, beta, lmbda):
    """Dual coefficients A [n, C] for one (beta, lambda)."""
    residual = onehot - support @ text.T
    return KernelSolver(support, beta).coefficients(residual, lmbda)


@TRAINER_REGISTRY.register()
class ProKeR(CachedFeatureTrainer):
    """Closed-form kernel ridge regression on the zero-shot residual; beta, lambda chosen on val."""

    model_name = "proker"

    def official_views(self, dataset):
        return 1 if dataset in IMAGENET_FAMILY else AUGMENT_VIEWS

    def uses_augmentation(self):
        # ImageNet's official single view is not augmented; a user-set view count is.
        return not (self.cfg.DATASET.NAME in IMAGENET_FAMILY and self.cfg.TRAINER.CACHED.VIEWS <= 0)

    def head_shapes(self, dim, n_support):
        self.check_memory(n_support, dim)
        return {"support": (n_support, dim), "coefficients": (n_support, self.num_classes), "beta": (1,)}

    def fixed_value_hint(self):
        return "TRAINER.PROKER.BETA and TRAINER.PROKER.LAMBDA, e.g. TRAINER.PROKER.BETA 1.7 TRAINER.PROKER.LAMBDA 0.1"

    def check_memory(self, n_support, dim):
        """Stop before any kernel is computed when the solve cannot fit the memory limit."""
        limit_gib = self.cfg.TRAINER.CACHED.MEMORY_LIMIT_GIB
        n_query = 4 * self.num_classes  # the validation split: min(K, 4) images per class at most
        self.dtype = solve_dtype(n_support, n_query, self.num_classes, limit_gib * 2 ** 30)
        if self.dtype is None:
            need = kernel_solve_bytes(n_support, 4, n_query, self.num_classes)
            per_image = n_support // self.n_views
            one_view = kernel_solve_bytes(per_image, 4, n_query, self.num_classes)
            raise UserError(
                f"ProKeR: the kernel over {n_support:,} support points ({per_image:,} images x {self.n_views} "
                f"views) needs {format_gib(need)} in float32, more than TRAINER.CACHED.MEMORY_LIMIT_GIB "
                f"({limit_gib:g} GiB). Use fewer views (TRAINER.CACHED.VIEWS 1 needs {format_gib(one_view)}), "
                f"or raise TRAINER.CACHED.MEMORY_LIMIT_GIB if this machine has the memory.")
        need = kernel_solve_bytes(n_support, self.dtype.itemsize, n_query, self.num_classes)
        print(f"ProKeR: {n_support:,} support points, solve in {str(self.dtype).replace('torch.', '')} "
              f"(about {format_gib(need)} at peak, limit {limit_gib:g} GiB)")
        self.run_record.update(solve_dtype=str(self.dtype).replace("torch.", ""), solve_peak_gib=round(need / 2 ** 30, 2))

    def fit(self, support, labels):
        support = l2_normalize(support).reshape(-1, support.shape[-1]).to(self.dtype)
        onehot = torch.nn.functional.one_hot(labels.repeat(self.n_views), self.num_classes).to(self.dtype)
        text = self.text_features.to(self.dtype)
        node = self.cfg.TRAINER.PROKER
        if node.BETA >= 0 and node.LAMBDA > 0:
            beta, lmbda, record = float(node.BETA), float(node.LAMBDA), None
        else:
            betas, lambdas, grid_source = grid_of(self.cfg.DATASET.NAME)
            val, val_labels = self.val_features("beta and lambda")
            val = l2_normalize(val).to(self.dtype)
            beta, lmbda, acc, pairs = proker_search(support, onehot, text, val, val_labels, betas, lambdas)
            record = {"split": "val", "images": len(val_labels), "grid_from": grid_source, "pairs": pairs,
                      "val_accuracy": acc}
            print(f"ProKeR: beta {beta:.4g}, lambda {lmbda:.4g} chosen on the val split ({len(val_labels)} images, "
                  f"{pairs} pairs of the {grid_source} grid, val accuracy {acc:.2f}%)")
        coefficients = proker_fit(support, onehot, text, beta, lmbda)
        self.head.support.copy_(support.float())
        self.head.coefficients.copy_(coefficients.float())
        self.head.beta.fill_(beta)
        self.run_record.update(beta=beta, lmbda=lmbda, search=record)

    def logits(self, image_features):
        features = l2_normalize(image_features.float())
        kernel = rbf_kernel(features, self.head.support, self.head.beta.item())
        return features @ self.text_features.t() + kernel @ self.head.coefficients


register_method(Method(name="proker", trainer="ProKeR", label="ProKeR", config=lambda dataset, shots: "rn50",
                       protocols=("fsval", "fullval"),
                       options={"BACKBONE": backbone_option()}))
