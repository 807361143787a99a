"""Every registered method trains one epoch and tests on the demo data with an open_clip
OpenAI-style model and a SigLIP-style one (the toolkit's tiny open_clip configs, random weights),
planned as the sweeps plan them and run through train.py's main in this process.

The SigLIP-style model (`fewshot-tiny-sigmoid`: no causal mask, last-token pooling, logit bias)
uses CLIP's BPE tokenizer: SigLIP's own tokenizers are hub files that cannot be fetched here.
"""
import pytest

import train
from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY
from dassl.utils import read_json
from datasets.demo_shapes_generate import TASKS, generate
from experiments.plan import plan_runs
from trainers.common.experiment import load_methods

BACKBONES = ("open_clip:fewshot-tiny-rn-quickgelu", "open_clip:fewshot-tiny-sigmoid")
SHOTS = 2


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("demo"))
    generate(root, 32, 2, 2, 2, task=TASKS["demo_shapes"])
    return root


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_method_trains_and_tests_on_an_open_clip_backbone(backbone, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FEWSHOT_FEATURE_CACHE", str(tmp_path / "features"))
    extra = ("MODEL.BACKBONE.NAME", backbone, "MODEL.BACKBONE.PRETRAINED", "False", "OPTIM.MAX_EPOCH", "1",
             "DATALOADER.NUM_WORKERS", "0")
    # the repository's own methods (another test file of this worker may have loaded a plugin's)
    methods = {name: method for name, method in load_methods().items() if not method.plugin}
    done, refused = [], []
    for name, method in sorted(methods.items()):
        shots = SHOTS if method.trains else 0
        for run in plan_runs(name, "demo_shapes", shots, (1,), str(tmp_path / "runs"), data_root, extra=extra):
            try:
                train.main(train.build_parser().parse_args(run.args))
            except ConfigError as err:  # methods that work inside the image tower's blocks need a ViT
                assert "rn" in backbone and "(a ResNet)" in str(err), (name, str(err))
                refused.append(name)
                continue
            result = read_json(f"{run.output_dir}/result.json")
            assert result["backbone_loaded"] == backbone, name
            assert result["preprocess"]["resolution"] == 32, name  # the model's, not the config's 224
            assert 0.0 <= result["accuracy"] <= 100.0, name
            done.append(name)
    assert {"coop", "taskres", "clip_adapter", "zeroshot", "tip_adapter", "tip_adapter_f", "linear_probe"} <= set(done)
    assert set(done) | set(refused) == set(methods) and not set(done) & set(refused)
    needs_vit = {name for name, m in methods.items() if getattr(TRAINER_REGISTRY.get(m.trainer), "NEEDS_VIT", False)}
    assert set(refused) == (needs_vit if "rn" in backbone else set()) and "clip_lora" in needs_vit
