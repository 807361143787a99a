"""Selection protocols: how held-out data may choose a run's settings, checkpoint or blend.

Few-shot papers disagree here (fixed settings, a search on a few-shot validation split, a search
on the full validation split, or an epoch picked on the test split), so every run names its
protocol, tables never average runs of different protocols, and in every protocol but `oracle`
the test split stays sealed until the engine's final evaluation.
"""
from dassl.config.merge import ConfigError
from dassl.utils.errors import UserError

PROTOCOLS = {
    "nov": "no selection on held-out data: fixed settings, or presets taken from a paper",
    "fsval": "selection only on the few-shot validation split (at most min(shots, 4) images per class)",
    "fullval": "selection on the dataset's full validation split, as some official code does (flagged)",
    "oracle": "selection on the TEST split, only to reproduce official code that does it; "
              "never averaged or ranked with the other protocols",
}
ORACLE = "oracle"


def check_protocol(name, where="PROTOCOL"):
    if name not in PROTOCOLS:
        listed = "; ".join(f"{k}: {v}" for k, v in PROTOCOLS.items())
        raise ConfigError(f"{where} = {name!r} is not a protocol. Choose one of: {listed}")
    return name


def sealed_message(trainer, protocol):
    """Why a read of the test split before the final evaluation is refused."""
    return (f"{trainer} tried to read the test split before the final evaluation, but PROTOCOL "
            f"{protocol or '(default)'} keeps it sealed until training and selection have ended. "
            "Select on the validation split instead, or run with PROTOCOL oracle to reproduce "
            "official code that selects on test (its results are flagged and never ranked).")


def check_val_split(dataset, num_classes, need, selections, trainer, dataset_name):
    """The val split's image counts per class ({images, classes, min_per_class, max_per_class,
    required_per_class}, kept in result.json) when every class has `need` images; else one
    error naming the short classes and the fixes. `selections`: (what `trainer` chooses, the
    setting that turns it off) pairs."""
    classnames = list(getattr(dataset, "classnames", None) or [])
    counts = [0] * max(num_classes, len(classnames))
    for item in dataset.val or []:
        if 0 <= item.label < len(counts):
            counts[item.label] += 1
    record = {"images": sum(counts), "classes": len(counts), "min_per_class": min(counts),
              "max_per_class": max(counts), "required_per_class": need}
    short = [i for i, n in enumerate(counts) if n < need]
    if not short:
        return record
    name = lambda i: classnames[i] if i < len(classnames) else f"class {i}"  # noqa: E731
    shown = ", ".join(f"{name(i)} {counts[i]}" for i in short[:6]) + (f", ... (+{len(short) - 6} more)" if len(short) > 6 else "")
    off = [setting for _, setting in selections if setting]
    raise UserError(
        f"{trainer} chooses {' and '.join(what for what, _ in selections)} on the val split of {dataset_name}, "
        f"which needs at "
        f"least {need} image(s) per class; it has {sum(counts)} image(s) for {len(counts)} classes and "
        f"{len(short)} class(es) have fewer ({shown}). Fix: more shots (DATASET.NUM_SHOTS; the few-shot val "
        f"split keeps min(shots, 4) images per class), a dataset or split file with a val split for every "
        f"class, or a run without selection" + (f" ({'; '.join(off)})" if off else
                                                 " (another method, e.g. ZeroshotCLIP or CoOp)") + ".")
