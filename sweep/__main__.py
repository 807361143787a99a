"""`python -m sweep`: see sweep/cli.py."""
from .cli import run

run()
