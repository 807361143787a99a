"""The BACKBONE option: each method declaring it plans the official config of that backbone
(its own output folder), and the default RN50 plans exactly what it planned before."""
import pytest
import yaml

from dassl.utils.errors import UserError
from experiments import plan

CASES = [  # method, dataset, shots, backbone, config stem
    ("taskres", "imagenet", 16, "ViT-B/16", "adam_lr2e-4_B256_ep200_vit_b16"),
    ("taskres", "imagenet", 16, "RN101", "adam_lr2e-4_B256_ep200_rn101"),
    ("coop", "imagenet", 16, "ViT-B/32", "vit_b32_ep50"),
    ("coop", "dtd", 2, "ViT-B/16", "vit_b16_ep100"),
    ("clip_adapter", "imagenet", 16, "RN101", "rn101_ep50"),
    ("zeroshot", "imagenet", 0, "ViT-B/16", "vit_b16"),
    ("linear_probe", "imagenet", 16, "ViT-B/32", "vit_b32"),
]


@pytest.mark.parametrize("method,dataset,shots,backbone,stem", CASES)
def test_backbone_picks_its_config(tmp_path, method, dataset, shots, backbone, stem):
    run = plan.plan_runs(method, dataset, shots, seeds=[1], root=str(tmp_path),
                         settings={"BACKBONE": backbone})[0]
    assert run.cfg == stem and f"/{stem}_{shots}shots" in run.output_dir
    config_file = run.args[run.args.index("--config-file") + 1]
    with open(config_file) as f:
        assert yaml.safe_load(f)["MODEL"]["BACKBONE"]["NAME"] == backbone
    at = run.args.index("MODEL.BACKBONE.NAME")
    assert run.args[at + 1] == backbone


def test_default_backbone_plans_as_before(tmp_path):
    default = plan.plan_runs("coop", "imagenet", 16, seeds=[1], root=str(tmp_path))[0]
    rn50 = plan.plan_runs("coop", "imagenet", 16, seeds=[1], root=str(tmp_path),
                          settings={"BACKBONE": "RN50"})[0]
    assert default == rn50 and "MODEL.BACKBONE.NAME" not in default.args
    assert default.cfg == "rn50_ep50"


def test_unknown_backbone_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="BACKBONE=RN18: choose one of RN50, RN101"):
        plan.plan_runs("taskres", "imagenet", 16, root=str(tmp_path), settings={"BACKBONE": "RN18"})
    with pytest.raises(UserError, match="BACKBONE does not apply to tip_adapter"):
        plan.plan_runs("tip_adapter", "imagenet", 16, root=str(tmp_path),
                       settings={"BACKBONE": "RN101"})
