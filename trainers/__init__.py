"""CLIP few-shot methods, registered in dassl TRAINER_REGISTRY on import."""
from . import coop  # noqa: F401
from . import clip_adapter  # noqa: F401
from . import taskres  # noqa: F401
from . import zsclip  # noqa: F401
