"""Keep tests off the user's caches: the feature cache goes to a per-session temp folder
(inherited by every subprocess the tests start)."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_feature_cache(tmp_path_factory):
    old = os.environ.get("FEWSHOT_FEATURE_CACHE")
    os.environ["FEWSHOT_FEATURE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if old is None:
        os.environ.pop("FEWSHOT_FEATURE_CACHE", None)
    else:
        os.environ["FEWSHOT_FEATURE_CACHE"] = old
