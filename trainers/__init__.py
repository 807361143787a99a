"""CLIP few-shot methods, registered in dassl TRAINER_REGISTRY on import."""
import warnings

# openai-clip imports pkg_resources (setuptools<81); its deprecation warning is not actionable.
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)

from . import coop  # noqa: F401
from . import clip_adapter  # noqa: F401
from . import taskres  # noqa: F401
from . import zsclip  # noqa: F401
from . import tip_adapter  # noqa: F401
from . import linear_probe  # noqa: F401
from . import text_projection  # noqa: F401
from . import taskres_ablations  # noqa: F401
from . import lp_plus_plus  # noqa: F401
from . import clap  # noqa: F401
from . import gda  # noqa: F401
from . import proker  # noqa: F401
from . import cocoop  # noqa: F401
from . import kgcoop  # noqa: F401
from . import clip_lora  # noqa: F401
from . import clip_svd  # noqa: F401
from . import two_stage  # noqa: F401
from . import maple  # noqa: F401
from . import promptsrc  # noqa: F401
