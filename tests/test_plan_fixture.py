"""The planner plans the same runs into the same folders as before the method declarations:
tests/fixtures/planned_runs.json holds, for every method x 11 datasets x 1/2/4/8/16 shots x
seeds 1-3 (plus the option variants, zero-shot trainers and the eval/dg trees), the runs the
planner made before the experiment layer was rebuilt (trainer, cfg, variant, output folder,
train.py arguments, eval-only)."""
import json
import os

from experiments import plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "planned_runs.json")
SEEDS = (1, 2, 3)


def _epochs_of(cfg):
    """The epochs every fixture source run was faked with (the eval plans load that epoch)."""
    return 50 if "ep50" in cfg else 100 if "ep100" in cfg else 200


def _fill(text, places):
    for name, value in places.items():
        text = text.replace(name, value)
    return text


def _as_dict(run):
    return dict(trainer=run.trainer, dataset=run.dataset, shots=run.shots, seed=run.seed,
                cfg=run.cfg, variant=run.variant, output_dir=run.output_dir,
                eval_only=run.eval_only, args=list(run.args))


def test_every_request_plans_the_runs_it_planned_before(tmp_path, monkeypatch):
    with open(FIXTURE) as f:
        requests = json.load(f)["requests"]
    data, strong, work = tmp_path / "data", tmp_path / "strong_base", tmp_path / "work"
    for folder in (data, work):
        folder.mkdir()
    places = {"$DATA": str(data), "$STRONG_BASE": str(strong), "$REPO": REPO}
    for request in requests:  # the reference strong_base/ layout for every dataset and shots
        if request["env"].get("ENHANCED_BASE") == "$STRONG_BASE":
            for run in request["runs"]:
                path = run["args"][run["args"].index("--enhanced-base") + 1]
                os.makedirs(os.path.dirname(_fill(path, places)), exist_ok=True)
                open(_fill(path, places), "w").close()
    monkeypatch.chdir(work)  # config paths outside the working folder are written absolute
    checked = 0
    for request in requests:
        settings = {k: _fill(v, places) for k, v in request["env"].items()}
        common = dict(seeds=SEEDS, output="output", root=str(data), settings=settings,
                      extra=tuple(request["extra"]))
        if request["command"] == "runs":
            runs = plan.plan_runs(request["method"], request["dataset"], request["shots"],
                                  **common)
        else:
            runs = plan.plan_eval_runs(request["method"], request["dataset"], request["shots"],
                                       request["targets"], request["tree"], **common)
        expected = [dict(r, args=[_fill(a, places) for a in r["args"]])
                    for r in request["runs"]]
        assert [_as_dict(r) for r in runs] == expected, request
        for run in runs:
            if not run.eval_only:  # a finished source run for the eval/dg requests
                os.makedirs(run.output_dir, exist_ok=True)
                with open(os.path.join(run.output_dir, "result.json"), "w") as f:
                    json.dump({"epochs": _epochs_of(run.cfg)}, f)
        checked += len(runs)
    assert checked == 1503
