"""`python -m experiments`: see experiments/cli.py."""
from .cli import run

run()
