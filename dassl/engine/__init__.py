from .build import TRAINER_REGISTRY, build_trainer
from .run_result import RESULT_FILE
from .trainer import SimpleTrainer, TrainerBase, TrainerX
