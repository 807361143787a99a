"""User mistakes: one message naming what is wrong and the fix, exit code 2, no traceback."""
import os
import sys

DEBUG_ENV = "FEWSHOT_DEBUG"  # set to 1 to see the traceback of a user error


class UserError(Exception):
    """Input the user can fix (a file, key, value or folder); the message says how."""


def run_cli(main, *args, **kwargs):
    """Call a command-line entry point; a UserError becomes `error: <message>` and exit 2."""
    try:
        return main(*args, **kwargs)
    except UserError as error:
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"error: {_unwrapped(str(error))}", file=sys.stderr)
        sys.exit(2)


def _unwrapped(message):
    """A UserError raised in a DataLoader worker comes back with the worker's traceback inside
    its message ("Caught X in DataLoader worker process 0. Original Traceback ..."): keep the
    original message only."""
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    prefix, sep, rest = last.partition(": ")
    return rest if sep and " " not in prefix else last


class CheckpointError(UserError):
    """A checkpoint or weights file that is missing, unreadable, or made for another model."""


class OutputDirError(UserError):
    """An output folder that cannot be written (read-only, full) or holds files a run must not replace."""


class TestSplitSealed(UserError):
    """Training or selection code read the test split before the final evaluation."""
