"""LP++, CLAP, GDA and ProKeR on the shared feature cache (tiny real CLIP, a benchmark-layout
fixture on disk): each trains and tests, is deterministic per seed, never reads the test split
before its final evaluation, and a sweep of every cached method encodes each image once."""
import json
import os
import shutil

import pytest
import torch

from dassl.utils.errors import TestSplitSealed

from tests.clip_run_helpers import build_in_process, fixture_world, result, trainer_args
from tests.engine_helpers import run_train
from tests.test_user_errors import _check_message

DATASET = "DescribableTextures"  # the benchmark layout (dtd/ with its split file)
N_CLASSES, PER_CLASS = 4, 20  # per class: 10 train, 4 val, 6 test images
CONFIGS = {m: f"{m}/rn50.yaml" for m in ("LPPlusPlus", "CLAP", "GDA", "ProKeR")}
SHORT = ("TRAINER.LP_PLUS_PLUS.EPOCHS", "30", "OPTIM.MAX_EPOCH", "20")  # CLAP / LP++ epochs, shortened
HEADS = {"LPPlusPlus": "lp_plus_plus", "CLAP": "clap", "GDA": "gda", "ProKeR": "proker"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return fixture_world(tmp_path_factory.mktemp("cached_methods"), DATASET, N_CLASSES, PER_CLASS)


def args_for(world, trainer, out, cache, *opts, shots=4, seed=1, config=None, flags=()):
    return trainer_args(trainer, config or CONFIGS[trainer], world["data_root"], world["clip_path"],
                        world["root"] / out, DATASET, "DATASET.NUM_SHOTS", str(shots),
                        "TRAIN.FEATURE_CACHE.ROOT", str(cache), *SHORT, *opts, flags=("--seed", str(seed), *flags))


def fitted(trainer):
    return {k: v.clone() for k, v in trainer.head.state_dict().items() if torch.is_tensor(v)}


@pytest.mark.parametrize("method", list(CONFIGS))
def test_method_trains_tests_and_is_deterministic_per_seed(world, tmp_path, method):
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        trainer = build_in_process(args_for(world, method, f"{method}-{name}", tmp_path / "cache", seed=seed))
        trainer.train()
        runs.append((fitted(trainer), result(world["root"] / f"{method}-{name}")))
    (first, res_a), (again, res_b), (other, _) = runs
    assert 0 <= res_a["accuracy"] <= 100 and res_a["trainer"] == method
    assert res_a["accuracy"] == res_b["accuracy"]
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)  # another seed, another support set


@pytest.mark.timeout(1800)  # two train.py runs; slow on a loaded 2-core machine
@pytest.mark.parametrize("method", list(CONFIGS))
def test_the_saved_model_evaluates_to_the_same_accuracy(world, tmp_path, method):
    out = world["root"] / f"{method}-saved"
    run_train(args_for(world, method, f"{method}-saved", tmp_path / "cache"))
    evaluated = world["root"] / f"{method}-eval"
    run_train(args_for(world, method, f"{method}-eval", tmp_path / "cache",
                       flags=("--eval-only", "--model-dir", str(out))))
    assert result(evaluated)["accuracy"] == result(out)["accuracy"]


@pytest.mark.parametrize("method", list(CONFIGS))
def test_no_method_reads_the_test_split_before_its_final_evaluation(world, tmp_path, method):
    trainer = build_in_process(args_for(world, method, f"{method}-closed", tmp_path / "cache"))
    fit, attempts = trainer.fit, []

    def fit_that_tries_the_test_split(support, labels):
        for attempt in (lambda: next(iter(trainer.test_loader)), lambda: trainer.dm.dataset.test[0],
                        lambda: len(trainer.dm.dataset.test)):
            with pytest.raises(TestSplitSealed, match="tried to read the test split before the final evaluation"):
                attempt()
            attempts.append(attempt)
        return fit(support, labels)

    trainer.fit = fit_that_tries_the_test_split
    trainer.train()
    assert len(attempts) == 3
    assert result(world["root"] / f"{method}-closed")["split"] == "test"  # the final test read it afterwards
    assert len(trainer.dm.dataset.test) == N_CLASSES * 6


SWEEP = {  # every cached method; Tip-Adapter and the linear probe in the fast pipeline, one view set for all seeds
    "LPPlusPlus": ((), None), "CLAP": ((), None), "GDA": ((), None), "ProKeR": ((), None),
    "TipAdapter": (("TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEWS_PER_SEED", "False"),
                   "TipAdapter/rn50.yaml"),
    "LinearProbeCLIP": (("TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEWS_PER_SEED", "False"),
                        "LinearProbeCLIP/rn50.yaml"),
}


def _sweep(world, cache, tag):
    """{trainer: encoder passes} over shots (1, 4) x seeds (1, 2), plus the images each split used."""
    passes, train_images, val_images, test_images = {}, set(), set(), set()
    for method, (opts, config) in SWEEP.items():
        for shots in (1, 4):
            for seed in (1, 2):
                trainer = build_in_process(args_for(world, method, f"sweep-{tag}-{method}-{shots}-{seed}", cache,
                                                    *opts, shots=shots, seed=seed, config=config))
                trainer.train()
                passes[method] = passes.get(method, 0) + trainer.image_encoder_forwards
                train_images |= {item.impath for item in trainer.dm.dataset.train_x}
                val_images |= {item.impath for item in trainer.dm.dataset.val}
                test_images |= {item.impath for item in trainer.dm.dataset.test}
    return passes, train_images, val_images, test_images


def test_a_sweep_of_every_cached_method_encodes_each_image_once(world, tmp_path):
    cache = tmp_path / "cache"
    passes, train, val, test = _sweep(world, cache, "first")
    # Sets: 10 Tip-Adapter-augmented views (GDA, ProKeR, Tip-Adapter), 1 such view (LP++), 20 views
    # of the default crop (CLAP), the test transform (validation images of all, the linear probe's
    # training images), and the exact test cache (one test batch size for all).
    expected = 10 * len(train) + len(train) + 20 * len(train) + len(val | train) + len(test)
    assert sum(passes.values()) == expected, passes
    again, *_ = _sweep(world, cache, "second")
    assert sum(again.values()) == 0, again


# ----------------------------------------------------------------------------- bad input
def _drop_val(data_root, tmp):
    root = os.path.join(tmp, "data_small_val")
    shutil.copytree(data_root, root)
    path = os.path.join(root, "dtd", "split_zhou_DescribableTextures.json")
    split = json.load(open(path))
    split["val"] = split["val"][:1]
    json.dump(split, open(path, "w"))
    for folder in ("split_fewshot",):  # few-shot subsets drawn from the old split
        shutil.rmtree(os.path.join(root, "dtd", folder), ignore_errors=True)
    return root


def _error(args):
    proc = run_train(args, check=False)
    return proc.returncode, proc.stderr


def test_zero_shots_is_one_message(world, tmp_path):
    code, stderr = _error(args_for(world, "GDA", "zero", tmp_path / "cache", shots=0))
    _check_message(code, stderr, ["GDA", "DATASET.NUM_SHOTS", "0"])


def test_a_validation_split_too_small_for_the_search_is_one_message(world, tmp_path):
    root = _drop_val(world["data_root"], str(tmp_path))
    args = trainer_args("GDA", CONFIGS["GDA"], root, world["clip_path"], tmp_path / "small", DATASET,
                        "DATASET.NUM_SHOTS", "4", "TRAIN.FEATURE_CACHE.ROOT", str(tmp_path / "cache"))
    code, stderr = _error(args)
    _check_message(code, stderr, ["validation split", f"for {N_CLASSES} classes", "TRAINER.GDA.ALPHA"])


def test_a_model_fitted_on_another_view_count_is_one_message(world, tmp_path):
    fitted_dir = world["root"] / "views2"
    run_train(args_for(world, "GDA", "views2", tmp_path / "cache", "TRAINER.CACHED.VIEWS", "2"))
    code, stderr = _error(args_for(world, "GDA", "views3-eval", tmp_path / "cache", "TRAINER.CACHED.VIEWS", "3",
                                   flags=("--eval-only", "--model-dir", str(fitted_dir))))
    _check_message(code, stderr, ["views 2", "views 3", "TRAINER.CACHED.VIEWS 2"])


def test_a_kernel_too_big_for_memory_stops_before_it_starts(world, tmp_path):
    code, stderr = _error(args_for(world, "ProKeR", "too-big", tmp_path / "cache",
                                   "TRAINER.CACHED.MEMORY_LIMIT_GIB", "0.000001"))
    _check_message(code, stderr, ["ProKeR", "160 support points", "TRAINER.CACHED.MEMORY_LIMIT_GIB",
                                  "TRAINER.CACHED.VIEWS 1"])
    assert "Caching" not in stderr  # stopped before any image was encoded


# ----------------------------------------------------------------------------- tables
def test_tables_show_the_published_numbers_beside_ours(tmp_path):
    from experiments.tables import fewshot_markdown, fewshot_tables
    from tests.test_parse_results import training_log, write
    from trainers.gda import PUBLISHED
    for seed, acc in ((1, 90.0), (2, 91.0), (3, 92.0)):
        folder = tmp_path / "caltech101" / "GDA" / "rn50_16shots" / f"seed{seed}"
        write(folder, training_log(acc))
        write(folder, json.dumps({"accuracy": acc, "trainer": "GDA", "dataset": "Caltech101", "num_shots": 16,
                                  "seed": seed, "backbone": "RN50", "method": "gda", "cfg": "rn50"}),
              name="result.json")
    out = fewshot_markdown(fewshot_tables(str(tmp_path), None, (1, 2, 3)), "accuracy")  # as parse_results --table
    published = PUBLISHED["RN50"]["Caltech101"][16]
    assert "Published (RN50; mrflogs/ICLR24" in out, out
    assert f"{published:.2f} (ours {91.0 - published:+.2f})" in out, out
