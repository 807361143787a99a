"""Every method with a training pipeline trains the same run, bit for bit, with the default
exact fast pipeline (persistent reseeded workers, decoded-image store, cached test features)
as with the reference pipeline (workers restarted every epoch, images decoded every epoch,
nothing cached): the same loss at every step, the same result and the same saved weights,
with 0, 1 and 2 loader workers. Runs go through train.py's own config code, in process."""
import pytest
import torch

from tests.clip_run_helpers import build_in_process, fixture_world, trainer_args
from tests.test_feature_cache_exact import run_record

DATASET = "OxfordPets"
EPOCHS = 2
REFERENCE = ("DATALOADER.PERSISTENT_WORKERS", "False", "DATALOADER.IMAGE_STORE.MODE", "off",
             "TRAIN.FEATURE_CACHE.ENABLED", "False")
METHODS = {
    "TaskRes": ("TaskRes/adam_lr2e-3_B256_ep100.yaml", ("TRAINER.TaskRes.PREC", "fp32")),
    "CoOp": ("CoOp/rn50.yaml", ("TRAINER.COOP.PREC", "fp32", "TEST.FINAL_MODEL", "best_val")),
    "CLIP_Adapter": ("CLIP_Adapter/rn50.yaml", ()),
    "TipAdapterF": ("TipAdapterF/rn50.yaml", ("TRAINER.TIP_ADAPTER.SEARCH_STEP", "(4, 2)",
                                              "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "2",
                                              "TRAINER.TIP_ADAPTER.PREC", "fp32")),
}


def assert_same(a, b, where="run"):
    """Equal, tensors bit for bit, through nested dicts, lists and tuples."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(a, b):
    """The same steps (loss, accuracy, lr), final metrics and saved weights."""
    assert_same(a, b)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return fixture_world(tmp_path_factory.mktemp("pipeline"), DATASET, 3, 8)


def train(world, trainer, out, workers, *pipeline, capsys):
    config, opts = METHODS[trainer]
    output = world["root"] / out
    args = trainer_args(trainer, config, world["data_root"], world["clip_path"], output, DATASET,
                        "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", str(EPOCHS), "DATALOADER.TRAIN_X.BATCH_SIZE", "3",
                        "DATALOADER.TEST.BATCH_SIZE", "5", "DATALOADER.NUM_WORKERS", str(workers), *opts, *pipeline)
    capsys.readouterr()
    build_in_process(args).train()
    return capsys.readouterr().out, output


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("trainer", list(METHODS))
def test_exact_fast_pipeline_trains_the_reference_run(world, capsys, trainer, workers):
    root = world["root"]
    reference = train(world, trainer, f"{trainer}-{workers}-reference", workers, *REFERENCE, capsys=capsys)
    exact = train(world, trainer, f"{trainer}-{workers}-exact", workers,
                  "DATALOADER.IMAGE_STORE.ROOT", str(root / "store"),
                  "TRAIN.FEATURE_CACHE.ROOT", str(root / "features"), capsys=capsys)
    assert "Image store" not in reference[0] and "Image store: " in exact[0]
    assert_same_run(run_record(*reference), run_record(*exact))


def test_disk_store_trains_the_reference_run(world, capsys, tmp_path):
    opts = ("DATALOADER.IMAGE_STORE.MODE", "disk", "DATALOADER.IMAGE_STORE.ROOT", str(tmp_path / "store"))
    reference = train(world, "TaskRes", "disk-reference", 2, *REFERENCE, capsys=capsys)
    cold = train(world, "TaskRes", "disk-cold", 2, *REFERENCE[:2], "TRAIN.FEATURE_CACHE.ENABLED", "False", *opts,
                 capsys=capsys)
    warm = train(world, "TaskRes", "disk-warm", 2, *opts, capsys=capsys)
    assert "decoded once into" in cold[0] and "mapped from" in warm[0]
    assert_same_run(run_record(*reference), run_record(*cold))
    assert_same_run(run_record(*reference), run_record(*warm))


def test_passive_waiting_does_not_change_the_run(world, tmp_path):
    # What the launchers add for parallel runs (passive waiting of idle OpenMP threads) against
    # spinning threads: the same run. (The thread count itself may change the last bits of CPU
    # float sums, so launchers keep the share of cores they gave before.)
    from tests.engine_helpers import run_train
    config, opts = METHODS["TaskRes"]
    outputs = []
    for name, env in [("passive", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}),
                      ("active", {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"})]:
        output = tmp_path / name
        args = trainer_args("TaskRes", config, world["data_root"], world["clip_path"], output, DATASET,
                            "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", str(EPOCHS), "DATALOADER.NUM_WORKERS", "1",
                            "DATALOADER.IMAGE_STORE.ROOT", str(tmp_path / "store"),
                            "TRAIN.FEATURE_CACHE.ROOT", str(tmp_path / "features"), *opts)
        outputs.append((run_train(args, env=env).stdout, output))
    assert_same_run(run_record(*outputs[0]), run_record(*outputs[1]))


def test_oversubscription_warning_names_what_to_set():
    from dassl.utils.threads import oversubscription_warning, thread_env
    assert oversubscription_warning(threads=2, cores=4, load=1.5) is None
    warning = oversubscription_warning(threads=2, cores=2, load=3.0)
    assert "oversubscribed" in warning and "OMP_NUM_THREADS=1" in warning
    assert thread_env(16, 4, env={}) == {"OMP_NUM_THREADS": "4", "OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_env(2, 4, env={"OMP_NUM_THREADS": "2"}) == {"OMP_WAIT_POLICY": "PASSIVE"}
