"""What the experiment layer needs to know about a method, declared once next to its trainer.

A trainer file registers its trainer in `TRAINER_REGISTRY` and, beside it, one `Method`:

    register_method(Method(
        name="taskres", trainer="TaskRes", label="TaskRes",
        config=lambda dataset, shots: ...,        # config stem in configs/trainers/TaskRes/
        overrides=lambda dataset, shots: [...],   # KEY VALUE pairs, e.g. alpha per dataset
    ))

The planner, the scripts, the launcher, the demo, the tables and the plots read only these
declarations, so a new method is one file (plus its configs).
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional


def _no_overrides(dataset: str, shots: int) -> List[str]:
    return []


@dataclass(frozen=True)
class Option:
    """A setting a user may change per sweep (an environment variable in the scripts)."""
    key: str  # config key it sets, e.g. "TRAINER.COOP.N_CTX"
    default: str
    help: str = ""


@dataclass(frozen=True)
class Method:
    name: str  # command-line name: scripts/<name>/main.sh, `--method <name>`
    trainer: str  # TRAINER_REGISTRY key
    label: str  # shown in tables and plots
    config: Callable[[str, int], str]  # (dataset config stem, shots) -> config stem
    overrides: Callable[[str, int], List[str]] = _no_overrides  # per dataset and shots
    options: Mapping[str, Option] = field(default_factory=dict)  # e.g. {"NCTX": Option(...)}
    variant: Optional[Callable[[Dict[str, str]], str]] = None  # variant folder from option values
    trains: bool = True  # False: evaluation only, one seedless run at 0 shots


METHODS: Dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise KeyError(f'A method named "{method.name}" is already registered '
                       f"(trainer {METHODS[method.name].trainer}); pick another name")
    METHODS[method.name] = method
    return method
