"""Run train.py and SIGKILL it the moment its log shows a line: `python tests/kill_at_log_line.py
PATTERN TRAIN_ARGS...`.

A watcher polling log.txt from outside races the run: on a loaded machine a short run can
finish before the watcher sees the line. Here the run kills itself right after the matching
line is complete in log.txt (the log file is line-buffered, so the line is on disk), which is
the earliest moment an outside watcher could have killed it, every time.
"""
import os
import re
import runpy
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dassl.utils.logger import Logger  # noqa: E402


def main():
    pattern, train_args = re.compile(sys.argv[1]), sys.argv[2:]
    write, line = Logger.write, []  # the text of the line being printed

    def write_then_die_on_match(self, msg):
        write(self, msg)
        line.append(msg)
        if "\n" in msg:  # a line is complete: match it, then start the next one
            text = "".join(line)
            line[:] = [text.rsplit("\n", 1)[1]]
            if pattern.search(text):
                os.kill(os.getpid(), signal.SIGKILL)

    Logger.write = write_then_die_on_match
    sys.argv = [os.path.join(REPO, "train.py"), *train_args]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
