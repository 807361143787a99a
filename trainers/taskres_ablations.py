"""The TaskRes paper's ablations (Tables 2, 4, 5) as experiment declarations: each is TaskRes
with its TRAINER.TaskRes variant keys, the official TaskRes config and alpha per dataset and
shot count, and its own variant folder so the runs of different ablations never share one."""
from trainers.common.experiment import Method, Option, backbone_option, register_method
from trainers.taskres import ENHANCED_BASE_OPTION, taskres_backbone_config


def taskres_config(dataset, shots):
    """The official TaskRes configs: lr 2e-4 on ImageNet, else 2e-3; 100 epochs up to 4 shots, else 200."""
    lr = "2e-4" if dataset == "imagenet" else "2e-3"
    return f"adam_lr{lr}_B256_ep{100 if shots <= 4 else 200}"


def taskres_alpha(dataset):
    return "1.0" if dataset == "oxford_flowers" else "0.5"


def ablation(name, label, keys, variant, trains=True, options=None, alpha_option=False):
    """Declare one ablation; `keys` are TRAINER.TaskRes KEY VALUE pairs beyond the defaults."""
    def overrides(dataset, shots):
        alpha = [] if alpha_option else ["TRAINER.TaskRes.RESIDUAL_SCALE", taskres_alpha(dataset)]
        return alpha + [f"TRAINER.TaskRes.{key}" if i % 2 == 0 else key for i, key in enumerate(keys)]
    options = {**(options or {}), "BACKBONE": backbone_option(taskres_backbone_config)}
    return register_method(Method(name=name, trainer="TaskRes", label=label, config=taskres_config,
                                  overrides=overrides, options=options, variant=variant, trains=trains,
                                  new_classes=not trains))


# Table 2 (ImageNet): t' = t, phi(t), t + alpha * phi(t); t + alpha * x is TaskRes itself.
ablation("taskres_base", "TaskRes base t' = t", ["TEXT_RESIDUAL", "none"], lambda _: "base_only", trains=False)
ablation("taskres_adapter", "t' = φ(t)", ["TEXT_RESIDUAL", "adapter"], lambda _: "text_adapter")
ablation("taskres_adapter_residual", "t' = t + α·φ(t)", ["TEXT_RESIDUAL", "adapter_residual"],
         lambda _: "text_adapter_residual")
# Table 4: the residual on the image side, and on both sides.
ablation("taskres_image", "TaskRes-I", ["TEXT_RESIDUAL", "none", "IMAGE_RESIDUAL", "True"], lambda _: "image_residual")
ablation("taskres_image_text", "TaskRes-I&T", ["IMAGE_RESIDUAL", "True"], lambda _: "image_text_residual")
# Table 5: fixed alpha values (ALPHA=0.1 ... 1.0) and a learnable alpha.
ablation("taskres_alpha", "TaskRes (fixed α)", [], lambda opts: f"alpha{opts['ALPHA']}", alpha_option=True,
         options={"ALPHA": Option("TRAINER.TaskRes.RESIDUAL_SCALE", "0.5", "the fixed residual scale alpha")})
ablation("taskres_learn_alpha", "TaskRes (learnable α)", ["LEARN_ALPHA", "True"], lambda _: "learnable_alpha")
# Table 3: the enhanced base alone (its classifier tested, nothing trained), per dataset and
# shot count since the enhanced base is tuned on the K-shot data.
ablation("taskres_enhanced_base", "Enhanced base", ["TEXT_RESIDUAL", "none"], lambda _: "enhanced_base_only",
         options={"ENHANCED_BASE": ENHANCED_BASE_OPTION})
