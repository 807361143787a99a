"""Run a command-line script for many argument lists in one process, so a test can check
dozens of user mistakes without paying the torch import for each.

    python tests/cli_driver.py SCRIPT CASES.json RESULTS.json

CASES.json: {name: [arg, ...]}. Each case runs SCRIPT as `__main__` (exactly what
`python SCRIPT args...` runs), with its stdout/stderr captured; a SystemExit gives the exit
code, any other exception is printed as the interpreter would (with "Traceback") and gives 1.
RESULTS.json: {name: {"code": int, "stderr": str}}.
"""
import contextlib
import io
import json
import os
import runpy
import sys
import traceback


def run_case(script, argv):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [script, *argv]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:  # noqa: B902 - report it the way the interpreter would
            traceback.print_exc()
            code = 1
    if hasattr(sys.stdout, "console"):  # train.py's log tee: close this case's log
        sys.stdout.close()
    return {"code": code, "stderr": err.getvalue(), "stdout_tail": out.getvalue()[-2000:]}


def main():
    script, cases_path, results_path = sys.argv[1:4]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` would have it
    cases = json.load(open(cases_path))
    stdout = sys.stdout
    results = {}
    for name, argv in cases.items():
        results[name] = run_case(script, argv)
        sys.stdout = stdout
    json.dump(results, open(results_path, "w"), indent=1)


if __name__ == "__main__":
    main()
