"""The documentation builds without a warning: every page is in the nav, every link and anchor
between pages resolves (`mkdocs build --strict`)."""
import os
import subprocess
import sys

from tests.engine_helpers import REPO


def test_docs_build_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.path.isfile(tmp_path / "site" / "index.html")


def test_readme_links_to_pages_that_exist():
    import re
    readme = open(os.path.join(REPO, "README.md")).read()
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert os.path.isfile(os.path.join(REPO, target)), target
