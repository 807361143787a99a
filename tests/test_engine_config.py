"""Config defaults (those of Dassl v0.6.3 that the CLIP methods rely on), merge order and error messages."""
import os
import subprocess
import sys

import pytest

from dassl.config import get_cfg_default, merge_from_file, merge_from_list
from dassl.config.merge import ConfigError
from tests.engine_helpers import REPO


def test_defaults_match_spec():
    cfg = get_cfg_default()
    expected = {
        "OUTPUT_DIR": "./output", "RESUME": "", "SEED": -1, "USE_CUDA": True, "VERBOSE": True,
        "INPUT.SIZE": (224, 224), "INPUT.INTERPOLATION": "bilinear", "INPUT.TRANSFORMS": (),
        "INPUT.NO_TRANSFORM": False, "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
        "INPUT.PIXEL_STD": [0.229, 0.224, 0.225], "INPUT.CROP_PADDING": 4, "INPUT.RRCROP_SCALE": (0.08, 1.0),
        "INPUT.CUTOUT_N": 1, "INPUT.CUTOUT_LEN": 16, "INPUT.GN_MEAN": 0.0, "INPUT.GN_STD": 0.15,
        "INPUT.RANDAUGMENT_N": 2, "INPUT.RANDAUGMENT_M": 10, "INPUT.COLORJITTER_B": 0.4,
        "INPUT.COLORJITTER_C": 0.4, "INPUT.COLORJITTER_S": 0.4, "INPUT.COLORJITTER_H": 0.1,
        "INPUT.RGS_P": 0.2, "INPUT.GB_P": 0.5, "INPUT.GB_K": 21,
        "DATASET.ROOT": "", "DATASET.NAME": "", "DATASET.SOURCE_DOMAINS": (), "DATASET.TARGET_DOMAINS": (),
        "DATASET.NUM_LABELED": -1, "DATASET.NUM_SHOTS": -1, "DATASET.VAL_PERCENT": 0.1,
        "DATALOADER.NUM_WORKERS": 4, "DATALOADER.K_TRANSFORMS": 1, "DATALOADER.RETURN_IMG0": False,
        "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler", "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
        "DATALOADER.TRAIN_X.N_DOMAIN": 0, "DATALOADER.TRAIN_X.N_INS": 16, "DATALOADER.TRAIN_U.SAME_AS_X": True,
        "DATALOADER.TEST.SAMPLER": "SequentialSampler", "DATALOADER.TEST.BATCH_SIZE": 32,
        "MODEL.INIT_WEIGHTS": "", "MODEL.BACKBONE.NAME": "", "MODEL.BACKBONE.PRETRAINED": True,
        "MODEL.HEAD.NAME": "", "MODEL.HEAD.HIDDEN_LAYERS": (), "MODEL.HEAD.ACTIVATION": "relu",
        "MODEL.HEAD.BN": True, "MODEL.HEAD.DROPOUT": 0.0,
        "OPTIM.NAME": "adam", "OPTIM.LR": 0.0003, "OPTIM.WEIGHT_DECAY": 5e-4, "OPTIM.MOMENTUM": 0.9,
        "OPTIM.SGD_DAMPNING": 0, "OPTIM.SGD_NESTEROV": False, "OPTIM.RMSPROP_ALPHA": 0.99,
        "OPTIM.ADAM_BETA1": 0.9, "OPTIM.ADAM_BETA2": 0.999, "OPTIM.STAGED_LR": False, "OPTIM.NEW_LAYERS": (),
        "OPTIM.BASE_LR_MULT": 0.1, "OPTIM.LR_SCHEDULER": "single_step", "OPTIM.STEPSIZE": (-1,),
        "OPTIM.GAMMA": 0.1, "OPTIM.MAX_EPOCH": 10, "OPTIM.WARMUP_EPOCH": -1, "OPTIM.WARMUP_TYPE": "linear",
        "OPTIM.WARMUP_CONS_LR": 1e-5, "OPTIM.WARMUP_MIN_LR": 1e-5, "OPTIM.WARMUP_RECOUNT": True,
        "TRAIN.CHECKPOINT_FREQ": 0, "TRAIN.PRINT_FREQ": 10, "TRAIN.COUNT_ITER": "train_x",
        "TEST.EVALUATOR": "Classification", "TEST.PER_CLASS_RESULT": False, "TEST.COMPUTE_CMAT": False,
        "TEST.NO_TEST": False, "TEST.SPLIT": "test", "TEST.FINAL_MODEL": "last_step", "TRAINER.NAME": "",
    }
    for key, value in expected.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, key


def test_get_cfg_default_returns_fresh_copies():
    a = get_cfg_default()
    a.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003


def _yaml(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    path = _yaml(tmp_path, "bad.yaml", "OPTIM:\n  LRR: 0.1\n")
    with pytest.raises(ConfigError) as e:
        merge_from_file(get_cfg_default(), path)
    assert "OPTIM.LRR" in str(e.value) and path in str(e.value)


def test_unknown_key_on_command_line_names_key():
    with pytest.raises(ConfigError) as e:
        merge_from_list(get_cfg_default(), ["OPTIM.MAX_EPOCHS", "3"])
    assert '"OPTIM.MAX_EPOCHS"' in str(e.value) and "command line" in str(e.value)


def test_train_py_merge_order_and_cli_error(tmp_path):
    """dataset config -> method config -> flags -> overrides, checked on the printed config."""
    ds = _yaml(tmp_path, "ds.yaml", "DATASET:\n  NAME: ToyFolder\n  ROOT: from_dataset\nOPTIM:\n  LR: 0.1\n  MAX_EPOCH: 7\n")
    method = _yaml(tmp_path, "m.yaml", "DATASET:\n  ROOT: from_method\nOPTIM:\n  LR: 0.2\n")
    code = (
        "import sys; sys.argv=['train.py','--dataset-config-file',%r,'--config-file',%r,'--root','from_flag',"
        "'OPTIM.MAX_EPOCH','9'];"
        "import train; cfg=train.setup_cfg(train.build_parser().parse_args());"
        "print(cfg.DATASET.NAME, cfg.DATASET.ROOT, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH)" % (ds, method)
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ToyFolder", "from_flag", "0.2", "9"]

    bad = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--config-file", method, "OPTIM.NOPE", "1"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2
    assert '"OPTIM.NOPE"' in bad.stderr and "Traceback" not in bad.stderr
