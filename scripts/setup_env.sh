# Sourced by scripts/test.sh and scripts/demo.sh: create .venv if missing, install the project
# (editable, with the test extra) when setup.py changed since the last install, activate it.
VENV_DIR="${VENV_DIR:-.venv}"
if [ ! -x "$VENV_DIR/bin/python" ]; then
    echo "[setup] creating $VENV_DIR"
    python3 -m venv "$VENV_DIR"
fi
# shellcheck disable=SC1091
source "$VENV_DIR/bin/activate"
stamp="$VENV_DIR/.installed-$(cksum < setup.py | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
    echo "[setup] installing the project and its test extra into $VENV_DIR (first time: a few minutes)"
    python -m pip install -q --upgrade pip
    python -m pip install -q -e ".[test]"
    rm -f "$VENV_DIR"/.installed-*
    touch "$stamp"
fi
