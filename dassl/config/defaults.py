"""The default config tree (Dassl v0.6.3 defaults that CoOp-family code relies on)."""
from yacs.config import CfgNode as CN

_C = CN()

_C.OUTPUT_DIR = "./output"
_C.RESUME = ""
_C.SEED = -1  # negative: no fixed seed
_C.USE_CUDA = True
_C.VERBOSE = True

_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"  # bilinear, bicubic or nearest
# Test-time resize: "shortest" (the shorter side to INPUT.SIZE, then a centre crop) or "squash"
# (both sides to INPUT.SIZE, no crop; models trained that way, e.g. SigLIP, expect it).
_C.INPUT.RESIZE_MODE = "shortest"
_C.INPUT.TRANSFORMS = ()
_C.INPUT.NO_TRANSFORM = False
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

_C.DATASET = CN()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
# Training loaders keep their workers across epochs, reseeded every epoch exactly as freshly
# started workers (same crops and flips); False restarts them every epoch (Dassl).
_C.DATALOADER.PERSISTENT_WORKERS = True
# Training images decoded once (dassl/data/image_store.py): auto | memory | disk | off.
_C.DATALOADER.IMAGE_STORE = CN()
_C.DATALOADER.IMAGE_STORE.MODE = "auto"
_C.DATALOADER.IMAGE_STORE.ROOT = ""  # "" = $FEWSHOT_IMAGE_STORE, else ~/.cache/fewshot-clip/images
_C.DATALOADER.IMAGE_STORE.MEMORY_MB = 1024  # auto: in memory up to this size, else on disk
_C.DATALOADER.K_TRANSFORMS = 1
_C.DATALOADER.RETURN_IMG0 = False
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""
_C.MODEL.BACKBONE.PRETRAINED = True
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"
_C.OPTIM.STEPSIZE = (-1,)
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1
_C.OPTIM.WARMUP_TYPE = "linear"  # constant or linear
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True

_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # 0: save only the last epoch
_C.TRAIN.PRINT_FREQ = 10
# Rolling resume checkpoint (`<model>/resume.pth.tar`): written after an epoch once this many
# minutes passed since the last save, removed when training ends; it never replaces the kept
# checkpoints. 0: after every epoch; negative: never.
_C.TRAIN.RESUME_EVERY_MINUTES = 10.0
_C.TRAIN.COUNT_ITER = "train_x"

_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"
_C.TEST.FINAL_MODEL = "last_step"  # or best_val

_C.TRAINER = CN()
_C.TRAINER.NAME = ""

# How held-out data may select settings in this run (dassl/engine/protocol.py): nov, fsval,
# fullval or oracle; "" = the method's declared default. Not a Dassl key: the reference
# engine has no notion of it, and every protocol but oracle keeps the test split sealed
# until the final evaluation.
_C.PROTOCOL = ""
