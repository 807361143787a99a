from .env import collect_env_info
from .logger import Logger, setup_logger
from .meters import AverageMeter, MetricMeter
from .registry import Registry
from .tools import (atomic_write, check_isfile, file_sha256, listdir_nohidden, mkdir_if_missing, read_json,
                    set_random_seed, write_json)
from .torchtools import (count_num_param, load_checkpoint, load_pretrained_weights,
                         resume_from_checkpoint, save_checkpoint)
