from .build import TRAINER_REGISTRY, build_trainer
from .trainer import RESULT_FILE, SimpleTrainer, TrainerBase, TrainerX
