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
    with pytest.raises(UserError, match="BACKBONE=RN18: use one of RN50, RN101.*open_clip:ARCH/TAG"):
        plan.plan_runs("taskres", "imagenet", 16, root=str(tmp_path), settings={"BACKBONE": "RN18"})
    with pytest.raises(UserError, match="NCTX does not apply to tip_adapter.*BACKBONE"):
        plan.plan_runs("tip_adapter", "imagenet", 16, root=str(tmp_path), settings={"NCTX": "4"})


def test_every_method_sweeps_any_backbone():
    from trainers.common.experiment import load_methods
    # the repository's own methods (a plugin loaded by another test in this process may lack it)
    missing = [name for name, method in load_methods().items()
               if not method.plugin and "BACKBONE" not in method.options]
    assert not missing, f"methods without a BACKBONE option: {missing}"


@pytest.mark.parametrize("method,dataset,shots,backbone,default_stem", [
    ("tip_adapter", "dtd", 4, "ViT-B/16", "rn50"), ("clap", "imagenet", 16, "RN101", "rn50"),
    ("lp_plus_plus", "dtd", 1, "ViT-B/32", "rn50"), ("kgcoop", "dtd", 16, "RN50", "vit_b16_ep100_ctxv1"),
    ("maple", "dtd", 16, "ViT-B/32", "vit_b16_c2_ep5_batch4_2ctx")])
def test_a_method_with_one_config_for_every_backbone_runs_it_in_a_folder_naming_the_backbone(
        tmp_path, method, dataset, shots, backbone, default_stem):
    from trainers.common.experiment import backbone_stem
    stem = f"{backbone_stem(backbone)}@{default_stem}"
    run = plan.plan_runs(method, dataset, shots, seeds=[1], root=str(tmp_path), settings={"BACKBONE": backbone})[0]
    assert run.cfg == stem and f"/{stem}_{shots}shots" in run.output_dir
    assert run.args[run.args.index("--config-file") + 1].endswith(f"/{default_stem}.yaml")
    assert run.args[run.args.index("MODEL.BACKBONE.NAME") + 1] == backbone
    default = plan.plan_runs(method, dataset, shots, seeds=[1], root=str(tmp_path))[0]
    assert default.cfg == default_stem and "MODEL.BACKBONE.NAME" not in default.args


@pytest.mark.parametrize("method", ["maple", "promptsrc", "clip_lora", "clip_svd", "two_stage"])
def test_a_method_inside_the_vit_tower_refuses_a_resnet_before_planning(tmp_path, method):
    with pytest.raises(UserError, match="BACKBONE=RN101: this method needs a ViT image tower: use ViT-B/32, "
                                        r"ViT-B/16 or an open_clip ViT"):
        plan.plan_runs(method, "dtd", 16, root=str(tmp_path), settings={"BACKBONE": "RN101"})


@pytest.mark.parametrize("method,dataset,shots,stem", [
    ("coop", "imagenet", 16, "rn50_ep50"), ("taskres", "dtd", 16, "adam_lr2e-3_B256_ep200"),
    ("zeroshot", "imagenet", 0, "rn50"), ("linear_probe", "dtd", 4, "rn50")])
def test_open_clip_backbone_runs_the_rn50_config_in_a_folder_naming_architecture_and_tag(
        tmp_path, method, dataset, shots, stem):
    from experiments.collect import cfg_family, method_label
    backbone = "open_clip:ViT-B-16/laion2b_s34b_b88k"
    run = plan.plan_runs(method, dataset, shots, seeds=[1], root=str(tmp_path), settings={"BACKBONE": backbone})[0]
    assert run.cfg == f"openclip-ViT-B-16-laion2b-s34b-b88k@{stem}"
    assert f"/openclip-ViT-B-16-laion2b-s34b-b88k@{stem}_{shots}shots" in run.output_dir
    assert run.args[run.args.index("--config-file") + 1].endswith(f"/{stem}.yaml")
    assert run.args[run.args.index("MODEL.BACKBONE.NAME") + 1] == backbone
    label = method_label(method, run.trainer, dataset, shots, run.variant, cfg_family(run.cfg))
    assert "openclip-ViT-B-16-laion2b-s34b-b88k@" in label


def test_malformed_open_clip_backbone_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="BACKBONE=open_clip:ViT B/x y: use one of .*open_clip:ARCH/TAG"):
        plan.plan_runs("coop", "dtd", 16, root=str(tmp_path), settings={"BACKBONE": "open_clip:ViT B/x y"})
