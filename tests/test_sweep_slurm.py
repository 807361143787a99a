"""The SLURM launcher (`python -m experiments --launcher slurm`) through submitit's real SlurmExecutor.

There is no cluster here, so the three SLURM commands submitit and the launcher call are
stand-ins on PATH: `sbatch` keeps the batch file submitit wrote and answers with a job id,
`squeue` lists the job ids of a file the test writes, `srun` runs its command. The test checks
the #SBATCH lines submitit made from the launcher's options, then runs a submitted array task
the way a node would (the batch file, with SLURM's variables), and the launcher's bookkeeping:
queued runs are not submitted twice, a run whose job vanished is.
"""
import os
import stat
import subprocess
import sys

import pytest

from tests.dataset_fixtures import write_fixture
from tests.test_sweep import clean_env, markers, run_sweep, tiny_overrides
from tests.tiny_clip import save_tiny_clip

FAKE_SBATCH = """#!/usr/bin/env bash
# Keep the batch file (the last argument) and answer like sbatch, with ids 4242, 4243, ...
n=$(ls "$FAKE_SLURM_DIR" | grep -c '^batch_' || true)
cp "${@: -1}" "$FAKE_SLURM_DIR/batch_$n.sh"
echo "Submitted batch job $((4242 + n))"
"""
FAKE_SQUEUE = """#!/usr/bin/env bash
# The live job ids are the lines of $FAKE_SLURM_DIR/queue (one id per line, like squeue -h -o %i)
cat "$FAKE_SLURM_DIR/queue" 2>/dev/null || true
"""
FAKE_SRUN = """#!/usr/bin/env bash
# Drop srun's own options, run the command on this "node"
while [[ "${1:-}" == --* ]]; do
    case "$1" in --output|--error) shift 2 ;; *) shift ;; esac
done
exec "$@"
"""
SETTING = "dtd/TaskRes/adam_lr2e-3_B256_ep100_1shots"


def write_executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def cluster(tmp_path):
    """A data root, a tiny CLIP, and an environment whose PATH holds the SLURM stand-ins."""
    bin_dir, slurm_dir = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    slurm_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE), ("srun", FAKE_SRUN)):
        write_executable(bin_dir / name, text)
    data = tmp_path / "data"
    write_fixture(data, "DescribableTextures")
    env = clean_env(tmp_path, FAKE_SLURM_DIR=str(slurm_dir),
                    PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return dict(tmp=tmp_path, slurm=slurm_dir, data=data, env=env,
                clip=save_tiny_clip(tmp_path), out=tmp_path / "out")


def grid_args(c):
    return ["--methods", "taskres", "--datasets", "dtd", "--shots", "1", "--seeds", "1", "2",
            "--data", c["data"], "--output", c["out"], "--launcher", "slurm"]


SLURM_OPTIONS = ["--partition", "gpu", "--gpus-per-job", "1", "--cpus-per-task", "6",
                 "--mem-gb", "24", "--time-min", "90", "--array-parallelism", "1",
                 "--account", "vision", "--slurm-extra", "mail-type=END",
                 "--slurm-setup", "export SWEEP_TEST_SETUP=1"]


def batch_lines(path):
    return path.read_text().splitlines()


def run_array_task(c, batch_file, array_id, task_id):
    """Run one task of a submitted array as SLURM would on a node: the batch file, with the
    variables SLURM sets (submitit reads them to find the task's pickled job)."""
    env = dict(c["env"], SLURM_JOB_ID=str(array_id + 100 + task_id),
               SLURM_ARRAY_JOB_ID=str(array_id), SLURM_ARRAY_TASK_ID=str(task_id),
               SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1", SLURM_NODEID="0", SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_JOB_NODELIST="node1")
    return subprocess.run(["bash", str(batch_file)], cwd=c["tmp"], env=env, capture_output=True,
                          text=True, timeout=600)


def test_slurm_submission_parameters_queue_and_resubmission(cluster):
    c = cluster
    overrides = ["--", *tiny_overrides(c["clip"])]
    first = run_sweep(*grid_args(c), *SLURM_OPTIONS, *overrides, env=c["env"])
    assert "submitted 2 run(s) as 2 SLURM task(s), array job(s) 4242" in first.stdout

    lines = batch_lines(c["slurm"] / "batch_0.sh")
    folder = c["out"] / ".sweep" / "slurm"
    for expected in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                     "#SBATCH --cpus-per-task=6", "#SBATCH --mem=24GB", "#SBATCH --time=90",
                     "#SBATCH --array=0-1%1", "#SBATCH --account=vision",
                     "#SBATCH --job-name=fewshot-sweep", "#SBATCH --mail-type=END",
                     "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
                     f"#SBATCH --output={folder}/%A_%a/%A_%a_0_log.out",
                     "export SWEEP_TEST_SETUP=1"):
        assert expected in lines, f"{expected!r} not in the batch file:\n" + "\n".join(lines)
    assert not any(line.startswith("#SBATCH --error") for line in lines)  # stderr joins stdout
    srun = next(line for line in lines if line.startswith("srun "))
    assert f"{sys.executable} -u -m submitit.core._submit {folder}/%j" in srun

    runs = [c["out"] / SETTING / f"seed{s}" for s in (1, 2)]
    for task, run in enumerate(runs):
        assert markers(run / "sweep.log") == [
            ("queued", {"launcher": "slurm", "job": f"4242_{task}",
                        "time": markers(run / "sweep.log")[0][1]["time"]})]

    # While SLURM lists the array, a second sweep submits nothing.
    (c["slurm"] / "queue").write_text("4242_0\n4242_1\n")
    again = run_sweep(*grid_args(c), *overrides, env=c["env"])
    assert "2 runs: 2 running; to submit: 0" in again.stdout
    assert f"[skip, running] {runs[0]}: queued in SLURM job 4242_0" in again.stdout
    assert not (c["slurm"] / "batch_1.sh").exists()

    # Task 0 runs on its "node": the pickled job runs train.py into the run folder.
    done = run_array_task(c, c["slurm"] / "batch_0.sh", 4242, 0)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (runs[0] / "result.json").is_file()
    events = markers(runs[0] / "sweep.log")
    assert [e for e, _ in events] == ["queued", "start", "exit"]
    assert events[1][1]["launcher"] == "slurm" and events[1][1]["job"] == "4242_0"
    assert events[2][1]["code"] == "0"
    assert "Job completed successfully" in done.stdout + done.stderr  # submitit's own log

    # Task 1 vanished from the queue without running: only that run is submitted again.
    (c["slurm"] / "queue").write_text("")
    status = run_sweep(*grid_args(c), "--status", env=c["env"])
    assert "2 runs: 1 done, 1 lost" in status.stdout
    resubmit = run_sweep(*grid_args(c), *overrides, env=c["env"])
    assert "to submit: 1" in resubmit.stdout
    assert f"[lost (queued in SLURM job 4242_1, which is gone)] {runs[1]}" in resubmit.stdout
    single = batch_lines(c["slurm"] / "batch_1.sh")
    assert not any(line.startswith("#SBATCH --array") for line in single)  # one job, no array
    assert markers(runs[1] / "sweep.log")[-1][1]["job"] == "4243"


def test_group_size_packs_runs_into_fewer_tasks(cluster):
    c = cluster
    proc = run_sweep(*grid_args(c), "--group-size", "2", "--array-parallelism", "8",
                     "--dry-run", env=c["env"])
    assert "SLURM array of 1 task(s) (2 run(s) each), at most 1 at a time" in proc.stdout
    assert "slurm_array_parallelism = 8" in proc.stdout
    assert not list(c["slurm"].iterdir())  # nothing submitted


def test_options_of_the_other_launcher_are_refused(cluster):
    c = cluster
    proc = run_sweep(*grid_args(c), "--workers", "2", env=c["env"], check=False)
    assert proc.returncode == 2 and "--workers belong(s) to --launcher local" in proc.stderr
    local = [a for a in grid_args(c) if a not in ("--launcher", "slurm")]
    proc = run_sweep(*local, "--partition", "gpu", env=c["env"], check=False)
    assert proc.returncode == 2 and "--partition belong(s) to --launcher slurm" in proc.stderr


def test_submission_problems_are_explained(cluster, tmp_path):
    c = cluster
    refusing = tmp_path / "refusing"
    refusing.mkdir()
    write_executable(refusing / "sbatch", "#!/usr/bin/env bash\n"
                     "echo 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    env = dict(c["env"], PATH=f"{refusing}{os.pathsep}{c['env']['PATH']}")
    proc = run_sweep(*grid_args(c), "--partition", "nope", env=env, check=False)
    assert proc.returncode == 2
    assert "sbatch refused the submission: sbatch: error: invalid partition specified: nope" \
        in proc.stderr
    assert not (c["out"] / SETTING / "seed1" / "sweep.log").exists()  # nothing marked queued

    no_slurm = dict(c["env"], PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                   if not os.path.isfile(os.path.join(p, "srun"))))
    proc = run_sweep(*grid_args(c), env=no_slurm, check=False)
    assert proc.returncode == 2 and 'Could not detect "srun"' in proc.stderr
    assert "or use --launcher local" in proc.stderr
