"""The run planner behind the scripts: every planned argument list is parsed by train.py's own
config setup, and the resulting config is checked against the official settings."""
import json
import os
import subprocess
import sys

import pytest

import train
from experiments import plan as planner
from experiments.plan import PlanError, plan_eval_runs, plan_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
              "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]


def official(method, dataset, shots):
    """(optimizer, lr, epochs, batch size, alpha) of the papers' official settings."""
    if method == "taskres":
        epochs = 100 if shots in (1, 2, 4) else 200
        lr = 2e-4 if dataset == "imagenet" else 2e-3
        return "adam", lr, epochs, 256, 1.0 if dataset == "oxford_flowers" else 0.5
    epochs = 50 if dataset == "imagenet" or shots == 1 else (100 if shots in (2, 4) else 200)
    return "sgd", 0.002, epochs, 32, None


def config_of(run):
    return train.setup_cfg(train.build_parser().parse_args(run.args))


@pytest.mark.parametrize("method", ["taskres", "coop", "clip_adapter"])
def test_every_planned_run_gets_the_official_settings(method, tmp_path):
    for dataset in BENCHMARKS:
        for shots in (1, 2, 4, 8, 16):
            runs = plan_runs(method, dataset, shots, seeds=(1, 3), output="out",
                             root=str(tmp_path))
            assert [r.seed for r in runs] == [1, 3]
            cfg = config_of(runs[1])
            optim, lr, epochs, batch, alpha = official(method, dataset, shots)
            assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH) == (optim, lr, epochs)
            assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == batch
            assert (cfg.DATASET.NUM_SHOTS, cfg.SEED, cfg.DATASET.ROOT) == (shots, 3, str(tmp_path))
            assert cfg.TRAINER.NAME == runs[1].trainer
            assert cfg.OUTPUT_DIR == runs[1].output_dir
            assert runs[1].output_dir.startswith(
                f"out/{dataset}/{runs[1].trainer}/{runs[1].cfg}_{shots}shots/")
            assert runs[1].output_dir.endswith("/seed3")
            if alpha is not None:
                assert cfg.TRAINER.TaskRes.RESIDUAL_SCALE == alpha
            if method == "coop":
                assert "/nctx16_cscFalse_ctpend/" in runs[1].output_dir
                assert (cfg.TRAINER.COOP.N_CTX, cfg.TRAINER.COOP.CSC,
                        cfg.TRAINER.COOP.CLASS_TOKEN_POSITION) == (16, False, "end")


def test_options_and_user_overrides(tmp_path):
    run = plan_runs("coop", "dtd", 4, seeds=(2,), root=str(tmp_path),
                    settings={"NCTX": "4", "CSC": "true", "CTP": "middle"},
                    extra=("OPTIM.MAX_EPOCH", "3", "INPUT.SIZE", "(32, 32)"))[0]
    cfg = config_of(run)
    assert run.output_dir == "output/dtd/CoOp/rn50_ep100_4shots/nctx4_cscTrue_ctpmiddle/seed2"
    assert (cfg.TRAINER.COOP.N_CTX, cfg.TRAINER.COOP.CSC) == (4, True)
    assert cfg.OPTIM.MAX_EPOCH == 3 and cfg.INPUT.SIZE == (32, 32)  # user overrides win

    run = plan_runs("taskres", "dtd", 16, seeds=(1,), root=str(tmp_path),
                    settings={"CFG": "adam_lr2e-4_B256_ep200_vit_b16"})[0]
    assert config_of(run).MODEL.BACKBONE.NAME == "ViT-B/16"
    assert "/adam_lr2e-4_B256_ep200_vit_b16_16shots/" in run.output_dir


def test_zeroshot_is_one_seedless_eval_run(tmp_path):
    runs = plan_runs("zeroshot", "eurosat", 0, seeds=(1, 2, 3), root=str(tmp_path),
                     settings={"TRAINER": "ZeroshotCLIP2"})
    assert len(runs) == 1 and runs[0].seed is None
    assert runs[0].output_dir == "output/eurosat/ZeroshotCLIP2/rn50_0shots"
    assert "--eval-only" in runs[0].args and "--seed" not in runs[0].args
    assert config_of(runs[0]).TRAINER.NAME == "ZeroshotCLIP2"


def test_enhanced_base_file_or_strong_base_folder(tmp_path):
    weights = tmp_path / "strong_base" / "DescribableTextures" / "rn50_8shots" / "model.pth.tar"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    for given in (tmp_path / "strong_base", weights):
        run = plan_runs("taskres", "dtd", 8, seeds=(1,), root=str(tmp_path),
                        settings={"ENHANCED_BASE": str(given)})[0]
        assert "/enhanced_base/seed1" in run.output_dir
        assert config_of(run).TRAINER.TaskRes.ENHANCED_BASE == str(weights)
    with pytest.raises(PlanError, match="rn50_16shots/model.pth.tar"):
        plan_runs("taskres", "dtd", 16, root=str(tmp_path),
                  settings={"ENHANCED_BASE": str(tmp_path / "strong_base")})
    with pytest.raises(PlanError, match="ENHANCED_BASE does not apply to coop"):
        plan_runs("coop", "dtd", 16, root=str(tmp_path), settings={"ENHANCED_BASE": "x.pth"})
    with pytest.raises(PlanError, match="TRAINER=ZeroshotCLIP2: taskres runs TaskRes"):
        plan_runs("taskres", "dtd", 16, root=str(tmp_path), settings={"TRAINER": "ZeroshotCLIP2"})


def test_dg_runs_load_the_final_imagenet_checkpoint(tmp_path):
    output = str(tmp_path / "out")
    with pytest.raises(PlanError, match="has not finished training"):
        plan_eval_runs("taskres", "imagenet", 16, DG_TARGETS, "dg", seeds=(1,),
                       output=output, root=str(tmp_path))
    trained = plan_runs("taskres", "imagenet", 16, seeds=(1,), output=output,
                        root=str(tmp_path))[0]
    os.makedirs(trained.output_dir)
    with open(os.path.join(trained.output_dir, "result.json"), "w") as f:
        json.dump({"accuracy": 60.0, "epochs": 200}, f)  # what the engine writes at the end
    runs = plan_eval_runs("taskres", "imagenet", 16, DG_TARGETS, "dg", seeds=(1,),
                          output=output, root=str(tmp_path))
    assert [r.dataset for r in runs] == DG_TARGETS
    for run in runs:
        assert run.output_dir == \
            f"{output}/dg/{run.dataset}/TaskRes/adam_lr2e-4_B256_ep200_16shots/seed1"
        args = run.args
        assert args[args.index("--model-dir") + 1] == trained.output_dir
        assert args[args.index("--load-epoch") + 1] == "200" and "--eval-only" in args
        cfg = config_of(run)
        assert cfg.DATASET.NAME == {"imagenetv2": "ImageNetV2", "imagenet_sketch":
                                    "ImageNetSketch", "imagenet_a": "ImageNetA",
                                    "imagenet_r": "ImageNetR"}[run.dataset]
        assert cfg.TRAINER.TaskRes.RESIDUAL_SCALE == 0.5  # the source's alpha
        assert cfg.OPTIM.LR == 2e-4


@pytest.mark.parametrize("call, message", [
    (lambda root: plan_runs("nope", "dtd", 1, root=root), "unknown method 'nope'"),
    (lambda root: plan_runs("coop", "dtdx", 1, root=root), "unknown dataset 'dtdx'"),
    (lambda root: plan_runs("coop", "dtd", 0, root=root), "positive number"),
    (lambda root: plan_runs("zeroshot", "dtd", 16, root=root), "pass 0, not 16"),
    (lambda root: plan_runs("coop", "dtd", 1, root=root, settings={"CFG": "rn51"}),
     "no config 'rn51' for CoOp"),
    (lambda root: plan_runs("coop", "dtd", 1, root=root + "/missing"), "is not a folder"),
    (lambda root: plan_runs("coop", "dtd", 1, root=root, settings={"CTP": "back"}),
     "CTP=back: choose one of end, middle, front"),
    (lambda root: plan_runs("coop", "dtd", 1, root=root, extra=("OPTIM.LR",)), "KEY VALUE pairs"),
    (lambda root: plan_eval_runs("zeroshot", "dtd", 0, ["dtd"], "eval", root=root),
     "trains nothing"),
])
def test_bad_requests_name_what_is_wrong(tmp_path, call, message):
    with pytest.raises(PlanError, match=message):
        call(str(tmp_path))


def test_scripts_pass_fields_to_train_py_without_shell_expansion(tmp_path):
    """Overrides with spaces or empty values reach train.py as they were given (no shell
    re-parsing); no DATA stops with the fix and exit 2."""
    data = tmp_path / "my data"
    data.mkdir()
    env = dict(os.environ, DATA=str(data), OUTPUT=str(tmp_path / "out"), SEEDS="7",
               PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "scripts/taskres/main.sh", "dtd", "2", "INPUT.SIZE",
                           "(32, 32)", "X.EMPTY", ""], cwd=REPO, env=env, capture_output=True,
                          text=True)
    run = plan_runs("taskres", "dtd", 2, seeds=(7,), output=env["OUTPUT"], root=str(data),
                    extra=("INPUT.SIZE", "(32, 32)", "X.EMPTY", ""))[0]
    with open(os.path.join(run.output_dir, "request.json")) as f:
        assert json.load(f) == run.request()  # written before train.py started
    assert run.args[-3:] == ["(32, 32)", "X.EMPTY", ""]
    assert "X.EMPTY" in proc.stdout + proc.stderr  # train.py got the key and refused it

    no_data = subprocess.run(["bash", "scripts/coop/main.sh", "dtd", "1"], cwd=REPO,
                             env=dict(env, DATA=""), capture_output=True, text=True)
    assert no_data.returncode == 2 and "set DATA=" in no_data.stderr
    assert "Traceback" not in no_data.stderr


def test_archive_moves_aside_and_never_overwrites(tmp_path):
    run = tmp_path / "seed1"
    run.mkdir()
    (run / "result.json").write_text("{}")
    first = planner.archive(str(run))
    run.mkdir()
    second = planner.archive(str(run))
    assert first != second and ".replaced-" in first
    assert os.path.isfile(os.path.join(first, "result.json")) and not run.exists()


def test_grid_is_datasets_by_shots():
    assert planner.grid("coop") == [(d, k) for d in BENCHMARKS for k in (1, 2, 4, 8, 16)]
    assert planner.grid("zeroshot", ["dtd"]) == [("dtd", 0)]
