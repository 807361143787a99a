"""Every user mistake in train.py ends in exit code 2, one `error:` message that names the
file/key/value and the fix, no traceback, and nothing overwritten (real train.py subprocesses,
tiny random-weight CLIP, a DescribableTextures fixture). All cases run once per module through
train.py's entry point in one driver process (see tests/cli_driver.py), a few also as plain
`python train.py` processes; each test checks one case."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from clip.model import CLIP

from tests.clip_run_helpers import trainer_args, write_fixture_and_clip
from tests.engine_helpers import REPO, run_train
from tests.machine_speed import scaled_timeout
from trainers.common.clip_loader import CLIP_ARCHITECTURES

DATASET = "DescribableTextures"
TASKRES = "TaskRes/adam_lr2e-3_B256_ep100.yaml"
COOP = "CoOp/rn50_ep50.yaml"
EPOCHS = 2


def _snapshot(folder):
    """{relative path: sha256} of every file below `folder`."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(d, f)
            out[os.path.relpath(path, folder)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def _split_with(data_root, tmp, edit):
    """A copy of the fixture whose split file is changed by `edit(split_dict)`."""
    root = os.path.join(tmp, "data_" + edit.__name__)
    shutil.copytree(data_root, root)
    path = os.path.join(root, "dtd", "split_zhou_DescribableTextures.json")
    split = json.load(open(path))
    image = edit(split)
    json.dump(split, open(path, "w"))
    if image is not None:  # the edit names an image file to corrupt
        image = os.path.join(root, "dtd", "images", image)
        assert os.path.isfile(image), image
        open(image, "w").write("not an image\n")
        return root, path, image
    return root, path


def label_out_of_range_in_test(split):
    split["test"][1][1] = 9


def train_label_out_of_range(split):
    split["train"][0][1] = 7


def renamed_class(split):
    split["val"][0][2] = "not the same name"


def missing_image(split):
    split["train"][0][0] = "nope/missing.jpg"


def corrupt_test_image(split):
    """Not a split change: the file of test entry 0 is overwritten with text (read by the cache)."""
    return split["test"][0][0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("usererr"))
    data_root, clip_path = write_fixture_and_clip(tmp, DATASET, per_class=4)
    trained = os.path.join(tmp, "trained")
    run_train(trainer_args("TaskRes", TASKRES, data_root, clip_path, trained, DATASET, "OPTIM.MAX_EPOCH", str(EPOCHS)))
    return dict(tmp=tmp, data=data_root, clip=clip_path, trained=trained)


def _cases(s):
    """name -> (train.py args, fragments the one-line message must contain)."""
    tmp, data, clip, trained = s["tmp"], s["data"], s["clip"], s["trained"]

    def args(out, *opts, trainer="TaskRes", config=TASKRES, flags=(), root=data, weights=clip):
        return trainer_args(trainer, config, root, weights, os.path.join(tmp, out), DATASET, *opts, flags=flags)

    ckpt = os.path.join(trained, "prompt_learner", f"model.pth.tar-{EPOCHS}")
    truncated_run = os.path.join(tmp, "truncated_run")
    shutil.copytree(trained, truncated_run)
    bad_ckpt = os.path.join(truncated_run, "prompt_learner", f"model.pth.tar-{EPOCHS}")
    open(bad_ckpt, "wb").write(open(ckpt, "rb").read()[:3000])
    text_run = os.path.join(tmp, "text_run")
    shutil.copytree(trained, text_run)
    text_ckpt = os.path.join(text_run, "prompt_learner", f"model.pth.tar-{EPOCHS}")
    open(text_ckpt, "w").write("this is a text file, not a checkpoint\n")
    truncated_clip = os.path.join(tmp, "truncated_clip.pt")
    open(truncated_clip, "wb").write(open(clip, "rb").read()[:5000])
    html_clip = os.path.join(tmp, "clip.html.pt")
    open(html_clip, "w").write("<html>404 Not Found</html>\n")
    with torch.device("meta"):  # a real ViT-B/32 state dict (shapes only, no storage)
        vit = CLIP(**CLIP_ARCHITECTURES["ViT-B/32"]).state_dict()
    vit_file = os.path.join(tmp, "ViT-B-32.pt")
    torch.save(vit, vit_file)
    a_file = os.path.join(tmp, "a_file")
    open(a_file, "w").write("x")
    empty_dir = os.path.join(tmp, "empty_dir")
    os.makedirs(empty_dir, exist_ok=True)
    eval_into_run = os.path.join(tmp, "eval_into_run")
    shutil.copytree(trained, eval_into_run)
    rerun_run = os.path.join(tmp, "rerun_run")
    shutil.copytree(trained, rerun_run)
    roots = {f.__name__: _split_with(data, tmp, f) for f in
             (label_out_of_range_in_test, train_label_out_of_range, renamed_class, missing_image,
              corrupt_test_image)}
    coop = dict(trainer="CoOp", config=COOP)

    return {
        "unknown_trainer": (args("o1", trainer="TaskRez"), ['TRAINER.NAME "TaskRez" is not registered', "TaskRes"]),
        "unknown_key": (args("o2", "OPTIM.LRR", "0.1"), ['Unknown config key "OPTIM.LRR"']),
        "odd_overrides": (args("o3", "OPTIM.LR"), ["KEY VALUE pairs"]),
        "bad_value_type": (args("o4", "OPTIM.MAX_EPOCH", "ten"), ['Bad value for "OPTIM.MAX_EPOCH"', "'ten'"]),
        "zero_shots": (args("o5", "DATASET.NUM_SHOTS", "0"), ["DATASET.NUM_SHOTS is 0", "whole training set",
                                                                "DATASET.NUM_SHOTS 16"]),
        "zero_epochs": (args("o6", "OPTIM.MAX_EPOCH", "0"), ["OPTIM.MAX_EPOCH is 0", "train nothing"]),
        "zero_batch": (args("o7", "DATALOADER.TRAIN_X.BATCH_SIZE", "0"), ["DATALOADER.TRAIN_X.BATCH_SIZE is 0"]),
        "zero_lr": (args("o8", "OPTIM.LR", "0"), ["OPTIM.LR is 0.0"]),
        "bad_final_model": (args("o9", "TEST.FINAL_MODEL", "best"), ["TEST.FINAL_MODEL is 'best'", "best_val"]),
        "bad_optimizer": (args("o10", "OPTIM.NAME", "lion"), ['OPTIM.NAME "lion" is not supported']),
        "unknown_dataset": (trainer_args("TaskRes", TASKRES, data, clip, os.path.join(tmp, "o11"), "DTD"),
                            ['DATASET.NAME "DTD" is not registered', "DescribableTextures"]),
        "missing_root": (args("o12", root=os.path.join(tmp, "no_data")), ["DATASET.ROOT", "no_data", "does not exist"]),
        "missing_plugin": (args("o13", flags=["--plugin", os.path.join(tmp, "nope.py")]),
                           ["--plugin file not found", "nope.py"]),
        "resume_missing_folder": (args("o14", flags=["--resume", os.path.join(tmp, "never_ran")]),
                                  ['--resume "' + os.path.join(tmp, "never_ran") + '" does not exist']),
        "resume_folder_without_checkpoint": (args("o15", flags=["--resume", empty_dir]),
                                             ['--resume "' + empty_dir + '" holds no checkpoint of prompt_learner']),
        "model_dir_missing": (args("o16", flags=["--eval-only", "--model-dir", os.path.join(tmp, "never_trained")]),
                              ['--model-dir "' + os.path.join(tmp, "never_trained") + '" does not exist']),
        "model_dir_without_eval_only": (args("o17", flags=["--model-dir", trained]), ["add --eval-only"]),
        "load_epoch_missing": (args("o18", flags=["--eval-only", "--model-dir", trained, "--load-epoch", "7"]),
                               ["model.pth.tar-7", f"Files there: checkpoint, model.pth.tar-{EPOCHS}".replace(
                                   "checkpoint, ", ""), "--load-epoch"]),
        "eval_into_training_folder": (
            trainer_args("TaskRes", TASKRES, data, clip, eval_into_run, DATASET,
                         flags=["--eval-only", "--model-dir", eval_into_run, "--load-epoch", str(EPOCHS)]),
            ["is the training run's folder", "result.json", os.path.join(eval_into_run, "eval")]),
        "eval_over_other_training_result": (
            args("o19", flags=["--eval-only", "--model-dir", trained, "--load-epoch", str(EPOCHS),
                               "--output-dir", eval_into_run]), ["holds the result.json of a training run"]),
        "checkpoint_of_another_trainer": (
            args("o20", "TRAINER.COOP.N_CTX", "4", trainer="CoOp", config=COOP,
                 flags=["--eval-only", "--model-dir", trained, "--load-epoch", str(EPOCHS)]),
            [f'"{ckpt}" does not fit CoOp\'s model "prompt_learner" (saved by TaskRes)', '"ctx"']),
        "truncated_checkpoint": (args("o21", flags=["--eval-only", "--model-dir", truncated_run, "--load-epoch", str(EPOCHS)]),
                                 [f'Cannot read checkpoint "{bad_ckpt}"', "truncated"]),
        "text_file_as_checkpoint": (args("o22", flags=["--eval-only", "--model-dir", text_run, "--load-epoch", str(EPOCHS)]),
                                    [f'Cannot read checkpoint "{text_ckpt}"']),
        "truncated_weights": (args("o23", weights=truncated_clip), [f"CLIP weights file {truncated_clip} cannot be read"]),
        "html_as_weights": (args("o24", weights=html_clip), [f"CLIP weights file {html_clip} cannot be read",
                                                            "not a PyTorch weights file"]),
        "vit_weights_under_rn101": (args("o25", "MODEL.BACKBONE.NAME", "RN101", weights=vit_file),
                                    [f"{vit_file} holds CLIP ViT-B/32 weights, but MODEL.BACKBONE.NAME is RN101",
                                     "MODEL.BACKBONE.NAME ViT-B/32"]),
        "weights_path_missing": (args("o26", weights=os.path.join(tmp, "nowhere.pt")),
                                 ["MODEL.BACKBONE.PATH", "nowhere.pt", "is not a file"]),
        "wrong_input_size": (args("o27", "INPUT.SIZE", "(64, 64)"), ["INPUT.SIZE = (64, 64)", "INPUT.SIZE (32, 32)"]),
        "output_dir_under_a_file": (trainer_args("TaskRes", TASKRES, data, clip, os.path.join(a_file, "out"), DATASET),
                                    ["Cannot write to the output folder", "a_file"]),
        "rerun_with_other_settings": (
            trainer_args("TaskRes", TASKRES, data, clip, rerun_run, DATASET, "OPTIM.MAX_EPOCH", str(EPOCHS),
                         "OPTIM.LR", "0.01"),
            [os.path.join(rerun_run, "prompt_learner", f"model.pth.tar-{EPOCHS}"),
             "was trained with other settings: OPTIM.LR 0.002 (now 0.01)", "another --output-dir"]),
        "test_label_out_of_range": (args("o28", root=roots["label_out_of_range_in_test"][0]),
                                    [roots["label_out_of_range_in_test"][1], '"test" entry 1', "label 9",
                                     "outside the 4 classes"]),
        "train_label_out_of_range": (args("o29", root=roots["train_label_out_of_range"][0]),
                                     [roots["train_label_out_of_range"][1], '"train" entry 0', "label 7"]),
        "class_name_differs": (args("o30", root=roots["renamed_class"][0]),
                               [roots["renamed_class"][1], '"not the same name" in "val" entry 0']),
        "image_missing": (args("o31", root=roots["missing_image"][0]), ["missing.jpg", "split_zhou_DescribableTextures.json"]),
        "unreadable_test_image": (args("o32", root=roots["corrupt_test_image"][0]),
                                  [f'annot read image "{roots["corrupt_test_image"][2]}"',
                                   f"listed in {roots['corrupt_test_image'][1]}", "Restore the file"]),
        "coop_no_context": (args("o33", "TRAINER.COOP.N_CTX", "0", **coop),
                            ["TRAINER.COOP.N_CTX = 0", "at least 1 context token"]),
        "coop_class_token_position": (args("o34", "TRAINER.COOP.CLASS_TOKEN_POSITION", "back", **coop),
                                      ["TRAINER.COOP.CLASS_TOKEN_POSITION = 'back'", "end", "middle", "front"]),
        "coop_prompt_too_long": (args("o35", "TRAINER.COOP.N_CTX", "80", **coop),
                                 ["does not fit the 77 tokens of tiny-rn", "TRAINER.COOP.N_CTX"]),
        "bad_precision": (args("o36", "DATASET.NUM_SHOTS", "2", "TRAINER.TIP_ADAPTER.PREC", "fp8", trainer="TipAdapter",
                               config="TipAdapter/rn50.yaml"),
                          ["TRAINER.TIP_ADAPTER.PREC = 'fp8'", "fp16", "fp32", "amp"]),
        "taskres_bad_precision": (args("o37", "TRAINER.TaskRes.PREC", "fp8"), ["TRAINER.TaskRes.PREC = 'fp8'"]),
        "clip_adapter_ratio": (args("o38", "TRAINER.CLIP_ADAPTER.RATIO", "1.5", trainer="CLIP_Adapter",
                                    config="CLIP_Adapter/rn50_ep50.yaml"),
                               ["TRAINER.CLIP_ADAPTER.RATIO = 1.5", "[0, 1]"]),
    }


# Checked additionally as plain `python train.py ...` processes, one per kind of error.
SUBPROCESS_CASES = ("zero_epochs", "checkpoint_of_another_trainer", "test_label_out_of_range", "html_as_weights")


@pytest.fixture(scope="module")
def outcomes(setup):
    """Every case through train.py's real entry point, all in one driver process (one torch
    import), plus the SUBPROCESS_CASES as separate train.py processes."""
    before = _snapshot(setup["trained"])
    cases = _cases(setup)
    cases_file = os.path.join(setup["tmp"], "cases.json")
    results_file = os.path.join(setup["tmp"], "results.json")
    json.dump({name: argv for name, (argv, _) in cases.items()}, open(cases_file, "w"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "cli_driver.py"),
                               os.path.join(REPO, "train.py"), cases_file, results_file], cwd=REPO, env=env)
    singles = {name: subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *cases[name][0]], cwd=REPO,
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for name in SUBPROCESS_CASES}
    singles = {name: (proc.wait(timeout=scaled_timeout(600)), proc.stderr.read()) for name, proc in singles.items()}
    assert driver.wait(timeout=scaled_timeout(600)) == 0
    results = json.load(open(results_file))
    return dict(cases=cases, results=results, singles=singles, before=before, after=_snapshot(setup["trained"]),
                setup=setup)


CASE_NAMES = [
    "unknown_trainer", "unknown_key", "odd_overrides", "bad_value_type", "zero_shots", "zero_epochs", "zero_batch",
    "zero_lr", "bad_final_model", "bad_optimizer", "unknown_dataset", "missing_root", "missing_plugin",
    "resume_missing_folder", "resume_folder_without_checkpoint", "model_dir_missing", "model_dir_without_eval_only",
    "load_epoch_missing", "eval_into_training_folder", "eval_over_other_training_result",
    "checkpoint_of_another_trainer", "truncated_checkpoint", "text_file_as_checkpoint", "truncated_weights",
    "html_as_weights", "vit_weights_under_rn101", "weights_path_missing", "wrong_input_size",
    "output_dir_under_a_file", "rerun_with_other_settings", "test_label_out_of_range", "train_label_out_of_range", "class_name_differs",
    "image_missing", "unreadable_test_image", "coop_no_context", "coop_class_token_position", "coop_prompt_too_long",
    "bad_precision", "taskres_bad_precision", "clip_adapter_ratio",
]


def _check_message(code, stderr, fragments):
    lines = [line for line in stderr.splitlines() if not _is_library_warning(line) and not _is_progress_bar(line)]
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    assert lines and lines[0].startswith("error: ") and not any(ln.startswith("error: ") for ln in lines[1:]), stderr
    message = "\n".join(lines)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("case", CASE_NAMES)
def test_user_mistake_is_one_clean_message(outcomes, case):
    result = outcomes["results"][case]
    _check_message(result["code"], result["stderr"], outcomes["cases"][case][1])
    # the finished training run next door is untouched by every mistake
    assert outcomes["after"] == outcomes["before"]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_user_mistake_in_its_own_train_py_process(outcomes, case):
    code, stderr = outcomes["singles"][case]
    _check_message(code, stderr, outcomes["cases"][case][1])


def test_the_case_list_is_complete(outcomes):
    assert sorted(CASE_NAMES) == sorted(outcomes["cases"])


def test_eval_into_the_training_folder_replaces_nothing(outcomes):
    folder = os.path.join(outcomes["setup"]["tmp"], "eval_into_run")
    assert _snapshot(folder) == outcomes["before"]  # same files, same bytes: no log, no result written


def test_debug_variable_shows_the_traceback(setup):
    argv = trainer_args("TaskRes", TASKRES, setup["data"], setup["clip"], os.path.join(setup["tmp"], "dbg"), DATASET,
                        "OPTIM.MAX_EPOCH", "0")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=scaled_timeout(300), env={**os.environ, "FEWSHOT_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError: OPTIM.MAX_EPOCH is 0" in proc.stderr


def _is_library_warning(line):
    """Third-party import warnings (clip's pkg_resources notice) are not our output."""
    return "UserWarning" in line or line.strip().startswith("from pkg_resources") or not line.strip()


def _is_progress_bar(line):
    """tqdm's progress lines (the cache's encoding bar, interrupted by the error) are not messages."""
    return re.search(r"\d+%\|.*\| \d+/\d+ \[", line) is not None
