"""Config keys the CLIP methods add to the engine's defaults (one place for all of them).

`train.py` calls `extend_cfg(cfg)` on `get_cfg_default()` before merging any file, so
every key below may appear in a YAML file or as a command-line override.
"""
from yacs.config import CfgNode as CN


def extend_cfg(cfg):
    cfg.MODEL.BACKBONE.PATH = ""  # explicit CLIP weights file; "" = resolve by name

    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    # Few-shot subset of this seed with the run's own training randomness (SEED); -1 = SEED.
    # Lets a check rerun a seed's subset with other augmentations and init (benchmarks.fast_parity).
    cfg.DATASET.FEWSHOT_SEED = -1
    # A subset file (datasets/subset_files.py, e.g. another run's subset.jsonl) to train on
    # instead of drawing the subset; "" = draw it from SEED as the reference code does.
    cfg.DATASET.SUBSET_FILE = ""

    # DATASET.NAME ImageFolder: the user's own data (datasets/image_folder.py)
    cfg.DATASET.IMAGE_FOLDER = CN()
    cfg.DATASET.IMAGE_FOLDER.DIR = ""  # folder of class sub-folders; absolute or under DATASET.ROOT
    cfg.DATASET.IMAGE_FOLDER.CSV = ""  # optional CSV of "path,label" rows, relative to DIR
    cfg.DATASET.IMAGE_FOLDER.TRAIN_FRACTION = 0.5  # per class; val next, test gets the rest
    cfg.DATASET.IMAGE_FOLDER.VAL_FRACTION = 0.2
    cfg.DATASET.IMAGE_FOLDER.SPLIT_SEED = 1  # the split is drawn once, saved, then reused

    # Frozen image-encoder feature cache (trainers/common/feature_cache.py; storage: tensor_store.py).
    cfg.TRAIN.FEATURE_CACHE = CN()
    # False: nothing cached, the reference pipeline (same as PIPELINE reference).
    cfg.TRAIN.FEATURE_CACHE.ENABLED = True
    # exact-cached-eval: test/val features cached, bit-identical results to reference;
    # fast: training views cached too (not the reference's numbers); reference: no cache.
    cfg.TRAIN.FEATURE_CACHE.PIPELINE = "exact-cached-eval"
    # fast only: augmented views per training image (chosen by the parity check, docs/performance.md).
    cfg.TRAIN.FEATURE_CACHE.VIEWS = 10
    # fast only: random = a view drawn per image and epoch (seeded by SEED and the epoch), so images
    # do not move in lockstep; cycle = epoch e reads view e % VIEWS for every image.
    cfg.TRAIN.FEATURE_CACHE.VIEW_ORDER = "random"
    # fast only: True = each run seed draws its own views, so seeds average over augmentation draws
    # as reference runs do; False = the same views in every seed (one cache for all seeds).
    cfg.TRAIN.FEATURE_CACHE.VIEWS_PER_SEED = True
    cfg.TRAIN.FEATURE_CACHE.ROOT = ""  # "" = $FEWSHOT_FEATURE_CACHE, else ~/.cache/fewshot-clip/features

    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.TRAINER.COOP.CSC = False
    cfg.TRAINER.COOP.CTX_INIT = ""
    cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32 or amp
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end, middle or front
    cfg.TRAINER.COOP.TRUNCATE_TEXT = True  # text transformer stops at the longest EOT (exact, faster)
    cfg.TRAINER.COOP.GRAD_CHECKPOINT = False  # recompute text blocks in backward (huge class counts)
    # CSC False, class name at the end: SOS + context through the text tower once per step, then
    # each class over its own tokens only (exact up to float rounding, much faster and smaller).
    cfg.TRAINER.COOP.SHARED_CONTEXT = True
    cfg.TRAINER.COOP.W = 1.0  # KgCoOp: weight of the knowledge-guided loss (its official key)

    # CoCoOp (trainers/cocoop.py): the official keys, plus the text-path switches of CoOp.
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16
    cfg.TRAINER.COCOOP.CTX_INIT = ""
    cfg.TRAINER.COCOOP.PREC = "fp16"  # fp16, fp32 or amp
    cfg.TRAINER.COCOOP.TRUNCATE_TEXT = True  # False: all 77 positions, per image (the official loop)
    # Each image's SOS + context once, then every class over its own tokens, images batched.
    cfg.TRAINER.COCOOP.SHARED_CONTEXT = True
    # Test/val: images whose class prompts run together = max(1, this // classes) (memory bound).
    cfg.TRAINER.COCOOP.EVAL_SEQUENCES = 8192

    cfg.TRAINER.TaskRes = CN()
    cfg.TRAINER.TaskRes.N_CTX = 16  # vestigial CoOp keys, kept so reference configs load
    cfg.TRAINER.TaskRes.CSC = False
    cfg.TRAINER.TaskRes.CTX_INIT = ""
    cfg.TRAINER.TaskRes.CLASS_TOKEN_POSITION = "end"
    cfg.TRAINER.TaskRes.PREC = "fp16"
    cfg.TRAINER.TaskRes.RESIDUAL_SCALE = 1.0
    cfg.TRAINER.TaskRes.ENHANCED_BASE = "none"

    # TaskRes ablations (paper Tables 2, 4, 5); the defaults are TaskRes itself.
    cfg.TRAINER.TaskRes.TEXT_RESIDUAL = "residual"  # residual: t + a*x; adapter: phi(t); adapter_residual: t + a*phi(t); none: t
    cfg.TRAINER.TaskRes.IMAGE_RESIDUAL = False  # True: image features f + a*x_img (TaskRes-I, with TEXT_RESIDUAL none)
    cfg.TRAINER.TaskRes.LEARN_ALPHA = False  # True: alpha starts at RESIDUAL_SCALE and trains
    cfg.TRAINER.TaskRes.ADAPTER_REDUCTION = 4  # phi's hidden width = D // ADAPTER_REDUCTION

    # Tip-Adapter / Tip-Adapter-F (trainers/tip_adapter.py); negative or empty = the dataset's official value
    cfg.TRAINER.TIP_ADAPTER = CN()
    cfg.TRAINER.TIP_ADAPTER.INIT_ALPHA = -1.0
    cfg.TRAINER.TIP_ADAPTER.INIT_BETA = 1.0
    cfg.TRAINER.TIP_ADAPTER.SEARCH_SCALE = ()  # (beta, alpha) upper ends of the search grids
    cfg.TRAINER.TIP_ADAPTER.SEARCH_STEP = (200, 20)  # (beta, alpha) grid sizes
    cfg.TRAINER.TIP_ADAPTER.SEARCH_HP = True  # False: keep the initial alpha and beta
    cfg.TRAINER.TIP_ADAPTER.AUGMENT_EPOCH = 10  # augmented passes averaged into each cache key
    cfg.TRAINER.TIP_ADAPTER.PREC = "fp16"  # how the frozen CLIP computes features (fp16 needs CUDA)
    # official: zero-shot logits x 100 as the official code; learned: x the backbone's logit scale
    cfg.TRAINER.TIP_ADAPTER.ZS_LOGIT_SCALE = "official"

    # Linear-probe CLIP (trainers/linear_probe.py)
    cfg.TRAINER.LINEAR_PROBE = CN()
    cfg.TRAINER.LINEAR_PROBE.SEARCH_STEPS = 8  # binary-search steps in log10(C) after the coarse sweep
    cfg.TRAINER.LINEAR_PROBE.MAX_ITER = 1000

    cfg.TRAINER.CLIP_ADAPTER = CN()
    cfg.TRAINER.CLIP_ADAPTER.RATIO = 0.2  # weight of the adapted feature in the residual mix
    cfg.TRAINER.CLIP_ADAPTER.REDUCTION = 4  # hidden width = D // REDUCTION

    from trainers.common.cached_methods import extend_cached_cfg
    extend_cached_cfg(cfg)  # LP++, CLAP, GDA, ProKeR (trainers/common/cached_methods.py)

    # Encoder tuning (trainers/clip_lora.py, clip_svd.py, two_stage.py); budget in iterations:
    # ITERS, or (ITERS 0) ITERS_PER_SHOT x DATASET.NUM_SHOTS. PREC: amp, bf16 or fp32 (CPU: fp32).
    # TEMPLATE "": the dataset's own template.
    cfg.TRAINER.CLIP_LORA = CN()
    cfg.TRAINER.CLIP_LORA.RANK = 2
    cfg.TRAINER.CLIP_LORA.ALPHA = 1.0  # scaling = ALPHA / sqrt(RANK)
    cfg.TRAINER.CLIP_LORA.DROPOUT = 0.25  # on the input of each LoRA branch
    cfg.TRAINER.CLIP_LORA.PARAMS = ("q", "k", "v")  # attention projections adapted (q, k, v, o)
    cfg.TRAINER.CLIP_LORA.ENCODERS = "both"  # both, text or vision
    cfg.TRAINER.CLIP_LORA.ITERS_PER_SHOT = 500
    cfg.TRAINER.CLIP_LORA.ITERS = 0
    cfg.TRAINER.CLIP_LORA.PREC = "amp"
    cfg.TRAINER.CLIP_LORA.TEMPLATE = "a photo of a {}."
    cfg.TRAINER.CLIP_LORA.OFFICIAL_INIT = True  # LoRA A drawn as the official script draws it for SEED
    cfg.TRAINER.CLIP_SVD = CN()
    cfg.TRAINER.CLIP_SVD.PARAMS = ("q", "k", "v", "o")
    cfg.TRAINER.CLIP_SVD.MLP = True  # the MLP's two linear layers too
    cfg.TRAINER.CLIP_SVD.ENCODERS = "both"
    cfg.TRAINER.CLIP_SVD.ITERS_PER_SHOT = 200
    cfg.TRAINER.CLIP_SVD.ITERS = 0
    cfg.TRAINER.CLIP_SVD.EPOCHS = 0  # > 0: train EPOCHS passes instead (the official base-to-new runs)
    cfg.TRAINER.CLIP_SVD.COSINE_T_MAX = 0  # 0: the budget; else the cosine's period in iterations
    cfg.TRAINER.CLIP_SVD.PREC = "amp"
    cfg.TRAINER.CLIP_SVD.TEMPLATE = ""
    cfg.TRAINER.TWO_STAGE = CN()
    cfg.TRAINER.TWO_STAGE.ENCODERS = "both"  # block LayerNorms of these encoders in stage 1
    cfg.TRAINER.TWO_STAGE.ITERS_PER_SHOT = 300  # M in the paper
    cfg.TRAINER.TWO_STAGE.ITERS = 0
    cfg.TRAINER.TWO_STAGE.STAGE1_FRACTION = 0.6  # alpha in the paper: share of the budget for stage 1
    cfg.TRAINER.TWO_STAGE.PREC = "amp"
    cfg.TRAINER.TWO_STAGE.TEMPLATE = "a photo of a {}."

    # MaPLe (trainers/maple.py): defaults of the official repository
    cfg.TRAINER.MAPLE = CN()
    cfg.TRAINER.MAPLE.N_CTX = 2  # context tokens per layer, text and image
    cfg.TRAINER.MAPLE.CTX_INIT = "a photo of a"
    cfg.TRAINER.MAPLE.PREC = "fp16"  # fp16, fp32 or amp
    cfg.TRAINER.MAPLE.PROMPT_DEPTH = 9  # J: layers 0..J-1 of both encoders get prompts

    # PromptSRC (trainers/promptsrc.py): defaults of the official repository
    cfg.TRAINER.PROMPTSRC = CN()
    cfg.TRAINER.PROMPTSRC.N_CTX_VISION = 4
    cfg.TRAINER.PROMPTSRC.N_CTX_TEXT = 4
    cfg.TRAINER.PROMPTSRC.CTX_INIT = "a photo of a"
    cfg.TRAINER.PROMPTSRC.PREC = "fp16"
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION = 9
    cfg.TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 9
    cfg.TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT = 25
    cfg.TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT = 10
    cfg.TRAINER.PROMPTSRC.GPA_MEAN = 15  # Gaussian prompt aggregation over epochs 1..MAX_EPOCH
    cfg.TRAINER.PROMPTSRC.GPA_STD = 1
    return cfg
