"""CoOp: learn the context words of CLIP's prompt, CLIP itself frozen.

Prompt per class: [SOS] [ctx_1 .. ctx_M] [name tokens] [.] [EOT] [padding], where only the
context vectors train. The class-token position moves the name to the end (after the
context), the middle (context split around it) or the front (context after it). Tokenizers
without a start token (`Backbone.text_start` 0) have no [SOS]; SigLIP-style towers pool the
last position (`Backbone.pool_index`) and run every prompt at full length.
"""
import torch
import torch.nn as nn

from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_pretrained_weights

from trainers.common.classifier import cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import Method, Option, backbone_option, register_method, rn50_prefix_replaced
from trainers.common.backbone import PromptTooLong
from trainers.common.precision import PRECISIONS, effective_precision
from trainers.common.published import Published, register_published, xd_rows
from trainers.common.published import rows as published_rows
from trainers.common.text_encoder import TextEncoder

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
# Derived from class names + CLIP, so never stored in checkpoints; reference checkpoints hold
# them, and they are dropped on load (this also lets base-class context load on new classes).
FIXED_BUFFERS = ("token_prefix", "token_suffix")


def _check_class_token_position(position):
    if position not in CLASS_TOKEN_POSITIONS:
        raise ConfigError(f"TRAINER.COOP.CLASS_TOKEN_POSITION = {position!r}; "
                         f"use one of {CLASS_TOKEN_POSITIONS}")


def _tokenize(backbone, texts, what):
    """The backbone's tokenizer, with an error that says which prompt is too long and what to do."""
    try:
        return backbone.tokenize(texts)
    except PromptTooLong as err:
        raise ConfigError(f"{what} does not fit the {backbone.context_length} tokens of {backbone.architecture} ({err}); "
                          "shorten the class name or use fewer context tokens (TRAINER.COOP.N_CTX / CTX_INIT)") from err


def _layout_index(position, n_ctx, name_lens, length, start=1):
    """Per class, where each output position reads from in the "end" layout
    [start tokens (SOS), ctx, name, rest]. None for "end" (nothing to move)."""
    if position == "end":
        return None
    half = n_ctx // 2
    rows = []
    for name_len in name_lens:
        ctx = list(range(start, start + n_ctx))
        name = list(range(start + n_ctx, start + n_ctx + name_len))
        rest = list(range(start + n_ctx + name_len, length))
        middle = ctx[:half] + name + ctx[half:] if position == "middle" else name + ctx
        rows.append(list(range(start)) + middle + rest)
    return torch.tensor(rows, dtype=torch.long)


class PromptLearner(nn.Module):
    """Learned context vectors + fixed token embeddings -> prompt embeddings (n_cls, 77, width).

    The context parameter is kept in fp32 whatever the CLIP dtype and cast at use: an fp16
    parameter makes Adam divide by eps=1e-8, which is 0 in half precision (NaN), and loses
    small SGD updates to fp16 rounding. The text encoder still runs in CLIP's dtype.
    """

    def __init__(self, cfg, classnames, clip_model, coop=None):
        super().__init__()
        coop = coop or cfg.TRAINER.COOP  # another method's keys of the same names (CoCoOp)
        _check_class_token_position(coop.CLASS_TOKEN_POSITION)
        n_cls = len(classnames)
        dtype = clip_model.dtype
        device = clip_model.token_embedding.weight.device
        ctx_dim = clip_model.text_tower.width
        start = clip_model.text_start  # tokens before the text: CLIP's SOS

        if coop.CTX_INIT:
            prompt_prefix = coop.CTX_INIT.replace("_", " ")
            init_tokens = _tokenize(clip_model, prompt_prefix, f"TRAINER.COOP.CTX_INIT {prompt_prefix!r}").to(device)
            # Count tokens, not words: a word can be several tokens.
            n_ctx = clip_model.token_counts([prompt_prefix])[0]
            with torch.no_grad():
                ctx_vectors = clip_model.token_embedding(init_tokens)[0, start:start + n_ctx].float()
            if coop.CSC:  # every class starts from the same words
                ctx_vectors = ctx_vectors.unsqueeze(0).repeat(n_cls, 1, 1)
            print(f'Initial context: "{prompt_prefix}"')
        else:
            n_ctx = coop.N_CTX
            if n_ctx < 1:
                raise ConfigError(f"TRAINER.COOP.N_CTX = {n_ctx}; needs at least 1 context token")
            shape = (n_cls, n_ctx, ctx_dim) if coop.CSC else (n_ctx, ctx_dim)
            print("Initializing class-specific contexts" if coop.CSC else "Initializing a generic context")
            ctx_vectors = torch.empty(*shape, dtype=torch.float32)
            nn.init.normal_(ctx_vectors, std=0.02)  # on CPU: same draw on every device
            ctx_vectors = ctx_vectors.to(device)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx_vectors)

        classnames = [name.replace("_", " ") for name in classnames]
        prompts = [f"{prompt_prefix} {name}." for name in classnames]
        tokenized = torch.cat([_tokenize(clip_model, p, f"CoOp prompt {p!r}") for p in prompts]).to(device)
        name_lens = clip_model.token_counts(classnames)
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized).type(dtype)

        self.register_buffer("token_prefix", embedding[:, :start], persistent=False)  # SOS
        self.register_buffer("token_suffix", embedding[:, start + n_ctx:], persistent=False)  # name . EOT pad
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        layout = _layout_index(coop.CLASS_TOKEN_POSITION, n_ctx, name_lens, tokenized.shape[1], start)
        self.register_buffer("layout", None if layout is None else layout.to(device), persistent=False)
        self.n_cls, self.n_ctx, self.name_lens, self.start = n_cls, n_ctx, name_lens, start
        self.class_token_position = coop.CLASS_TOKEN_POSITION
        self.dtype = dtype

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Reference CoOp checkpoints carry the fixed embeddings; ours rebuild them instead.
        for key in FIXED_BUFFERS:
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self):
        ctx = self.ctx.to(self.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        if self.layout is not None:  # move the name before/inside the context, per class
            prompts = prompts.gather(1, self.layout.unsqueeze(-1).expand(-1, -1, prompts.shape[-1]))
        return prompts


def text_path(coop, tower=None):
    """How CoOp runs its prompts through the text tower (all give the same features):
    "shared-context": SOS + context once, then each class over its own tokens (one shared
    context, class name at the end); "truncated": every prompt up to the longest EOT;
    "full": all positions, as the reference code does (and the only exact one for a tower
    without a causal mask)."""
    if not coop.TRUNCATE_TEXT or (tower is not None and not tower.causal):
        return "full"
    if (coop.SHARED_CONTEXT and not coop.CSC and coop.CLASS_TOKEN_POSITION == "end" and not coop.GRAD_CHECKPOINT
            and (tower is None or tower.plain_blocks)):
        return "shared-context"
    return "truncated"


class PromptClassifier(nn.Module):
    """Learned prompts through CLIP's frozen text tower -> class features -> logits."""

    def __init__(self, cfg, classnames, clip_model, coop=None):
        super().__init__()
        coop = coop or cfg.TRAINER.COOP
        self.prompt_learner = PromptLearner(cfg, classnames, clip_model, coop)
        self.text_path = text_path(coop, clip_model.text_tower)
        self.text_encoder = TextEncoder(clip_model, truncate=self.text_path != "full",
                                        grad_checkpoint=coop.GRAD_CHECKPOINT)
        self.logit_scale = clip_model.logit_scale
        self.length_groups = []
        if self.text_path == "shared-context":
            # Each class's tokens after the context (name, ".", EOT), grouped by their count.
            eot = clip_model.pool_index(self.prompt_learner.tokenized_prompts).tolist()
            self.tail_lengths = [e + 1 - self.prompt_learner.start - self.prompt_learner.n_ctx for e in eot]
            for length in sorted(set(self.tail_lengths)):
                self.length_groups.append(([i for i, n in enumerate(self.tail_lengths) if n == length], length))
            # Each class's EOT in its tail, for the padded group (moves with the module's device).
            self.register_buffer("tail_eot", torch.tensor(self.tail_lengths) - 1, persistent=False)
            print(f"Text path: shared-context (SOS + {self.prompt_learner.n_ctx} context tokens run once, then "
                  f"each class over its own {min(self.tail_lengths)}-{max(self.tail_lengths)} tokens: on CPU in "
                  f"{len(self.length_groups)} group(s) of equal length, on a GPU in one group padded to the "
                  f"longest); TRAINER.COOP.SHARED_CONTEXT False runs whole prompts")
        else:
            span = "all positions" if self.text_path == "full" else "every prompt up to the longest EOT"
            why = "" if clip_model.text_tower.causal else "; the text tower has no causal mask, so prompts run whole"
            print(f"Text path: {self.text_path} ({span}{why})")

    def class_features(self):
        """All class prompts, every call: the context changes at every step."""
        learner = self.prompt_learner
        if self.text_path != "shared-context":
            return self.text_encoder(learner(), learner.tokenized_prompts)
        prefix = torch.cat([learner.token_prefix[0], learner.ctx.to(learner.dtype)])  # SOS + context
        return self.text_encoder.encode_shared_prefix(prefix, self.shared_context_groups(prefix.is_cuda),
                                                      learner.n_cls)

    def shared_context_groups(self, padded):
        """The classes' tails, run together by group. On CPU the arithmetic dominates, so
        classes of equal tail length go together and no position is wasted; on a GPU the
        many small groups cost more in kernel launches than padding every class to the
        longest tail and running them all at once (measured on an H200: 1000 classes)."""
        suffix = self.prompt_learner.token_suffix
        if not padded:
            return [(indices, suffix[indices, :length], None) for indices, length in self.length_groups]
        return [(list(range(len(self.tail_lengths))), suffix[:, :max(self.tail_lengths)], self.tail_eot)]

    def forward(self, image_features):
        return cosine_logits(image_features, self.class_features(), self.logit_scale)


@TRAINER_REGISTRY.register()
class CoOp(FrozenCLIPTrainer):
    """Context Optimization (Zhou et al., IJCV 2022)."""
    KEYS = "COOP"  # the TRAINER.<KEYS> node holding PREC (subclasses: their own node)

    def check_cfg(self, cfg):
        # Fail before data and CLIP are loaded. (The device is not known yet; the CPU
        # fallback is decided in build_model.)
        prec = cfg.TRAINER[self.KEYS].PREC
        if prec not in PRECISIONS:
            raise ConfigError(f"TRAINER.{self.KEYS}.PREC = {prec!r}; use one of {PRECISIONS}")
        _check_class_token_position(cfg.TRAINER.COOP.CLASS_TOKEN_POSITION)

    def build_classifier(self, classnames):
        return PromptClassifier(self.cfg, classnames, self.clip_model)

    def build_model(self):
        cfg = self.cfg
        self.precision = effective_precision(cfg.TRAINER[self.KEYS].PREC, self.device,
                                             key=f"TRAINER.{self.KEYS}.PREC")
        # fp32/amp: CLIP is cast to float before the learner copies its embeddings.
        self.clip_model = self.freeze_on_device(self.load_clip(), self.precision)

        print("Building custom CLIP")
        self.classifier = self.build_classifier(self.dm.dataset.classnames).to(self.device)
        prompt_learner = self.classifier.prompt_learner
        print("Turning off gradients in both the image and the text encoder (only the context trains)")
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(prompt_learner, cfg.MODEL.INIT_WEIGHTS)

        optim = build_optimizer(prompt_learner, cfg.OPTIM)
        sched = build_lr_scheduler(optim, cfg.OPTIM)
        self.register_model("prompt_learner", prompt_learner, optim, sched)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None

    def logits(self, image_features):
        return self.classifier(image_features)

    def model_inference(self, input):
        # amp autocasts the training forward only; evaluation (no grad) runs in fp32 as in
        # the reference, where test batches skip autocast.
        if self.scaler is None or not torch.is_grad_enabled():
            return super().model_inference(input)
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            return super().model_inference(input)


def coop_schedule(dataset, shots):
    """The official CoOp config per shot count: 50 epochs for 1 shot (and ImageNet), 100 for
    2 and 4 shots, 200 for 8 and 16."""
    if dataset == "imagenet" or shots <= 1:
        return "rn50_ep50"
    return "rn50_ep100" if shots <= 4 else "rn50"


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"expected a positive whole number, not {text!r}")
    return str(int(text))


def _true_false(text):
    if text in ("True", "true", "1"):
        return "True"
    if text in ("False", "false", "0"):
        return "False"
    raise ValueError(f"expected True or False, not {text!r}")


register_method(Method(
    name="coop", trainer="CoOp", label="CoOp", config=coop_schedule,
    options={
        "NCTX": Option("TRAINER.COOP.N_CTX", "16", "context length", normalize=_positive_int),
        "CSC": Option("TRAINER.COOP.CSC", "False", "class-specific context", normalize=_true_false),
        "CTP": Option("TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "class token position",
                      choices=CLASS_TOKEN_POSITIONS),
        "BACKBONE": backbone_option(rn50_prefix_replaced),
    },
    variant=lambda v: f"nctx{v['NCTX']}_csc{v['CSC']}_ctp{v['CTP']}",
))

# Base-to-new and cross-dataset results of CoOp (ViT-B/16, 16 shots) as CoCoOp's paper reports them.
register_published("CoOp", Published(
    "CoOp", "Zhou et al., Conditional Prompt Learning (CoCoOp), CVPR 2022, Tables 1 and 2",
    base2new=published_rows([
        (82.69, 63.22, 71.66), (76.47, 67.88, 71.92), (98.00, 89.81, 93.73), (93.67, 95.29, 94.47),
        (78.12, 60.40, 68.13), (97.60, 59.67, 74.06), (88.33, 82.26, 85.19), (40.44, 22.30, 28.75),
        (80.60, 65.89, 72.51), (79.44, 41.18, 54.24), (92.19, 54.74, 68.69), (84.69, 56.05, 67.46)]),
    xd=xd_rows([71.51, 93.70, 89.14, 64.51, 68.71, 85.30, 18.47, 64.15, 41.92, 46.39, 66.55])))
