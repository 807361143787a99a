"""What the benchmarks measure the same way: peak memory, and one measurement per subprocess (so
one method's peak memory or warmed-up allocator cannot hide in another's)."""
import json
import os
import resource
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peak_memory_mb(device):
    """Peak memory so far, MiB: torch's allocations on CUDA, the process's peak resident size
    on CPU (ru_maxrss is in KiB on Linux)."""
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def run_child(module, spec):
    """`python -m module --child SPEC_JSON` in a fresh process; its last stdout line (JSON)."""
    proc = subprocess.run([sys.executable, "-m", module, "--child", json.dumps(spec)], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({spec}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
