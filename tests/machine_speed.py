"""How much slower than the reference machine this one runs the tests now, so time limits
(pytest-timeout's per-test limit, subprocess timeouts) scale with it instead of failing a
loaded or slow machine. No assertion depends on it: only how long a test may take.

slowdown() = contention x raw speed, measured once per process (and handed to subprocesses
through FEWSHOT_TEST_SLOWDOWN, which a user may also set by hand):
- contention: wall time / CPU time of a short single-threaded busy loop, or the 1-minute
  load average per core, whichever is larger (a process that gets a third of a core is 3x);
- raw speed: the loop's CPU time against the reference machine's (2-core AMD EPYC, 2026).
"""
import os
import time

SLOWDOWN_ENV = "FEWSHOT_TEST_SLOWDOWN"
REFERENCE_CPU_S = 0.2  # the busy loop's CPU time on the reference machine
MAX_SLOWDOWN = 10.0


def _busy_loop():
    total = 0
    for i in range(1_500_000):
        total += i * i % 7
    return total


def measure():
    wall, cpu = time.perf_counter(), time.process_time()
    _busy_loop()
    wall, cpu = time.perf_counter() - wall, max(time.process_time() - cpu, 1e-3)
    contention = wall / cpu
    try:
        contention = max(contention, os.getloadavg()[0] / (os.cpu_count() or 1))
    except OSError:
        pass
    return min(MAX_SLOWDOWN, max(1.0, contention * max(1.0, cpu / REFERENCE_CPU_S)))


def slowdown():
    value = os.environ.get(SLOWDOWN_ENV)
    if value:
        try:
            return max(1.0, float(value))
        except ValueError:
            pass
    factor = round(measure(), 2)
    os.environ[SLOWDOWN_ENV] = str(factor)
    return factor


def scaled_timeout(seconds):
    """`seconds` on the reference machine, stretched to this machine's slowdown."""
    return int(seconds * slowdown())
