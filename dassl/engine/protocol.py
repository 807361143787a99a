"""Selection protocols: how held-out data may choose a run's settings, checkpoint or blend.

Few-shot papers disagree here (fixed settings, a search on a few-shot validation split, a search
on the full validation split, or an epoch picked on the test split), so every run names its
protocol, tables never average runs of different protocols, and in every protocol but `oracle`
the test split stays sealed until the engine's final evaluation.
"""
from dassl.config.merge import ConfigError

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
