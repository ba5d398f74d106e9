"""modeling_umt.stage_runner: stages run in dependency order, several at a time, skipped when done, a failure
stops new launches and names the log; ProgressFileCallback feeds the status line."""

import json
import sys
import time
from types import SimpleNamespace

import pytest

from modeling_umt.stage_runner import Stage, StageFailed, format_seconds, run_stages, stage_progress
from modeling_umt.trainers import ProgressFileCallback

SCRIPT = """
import json, os, sys, time
args = sys.argv[1:]
out = args[args.index("--output_dir") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "..", "order.txt"), "a") as f:
    f.write(os.path.basename(out) + " start " + str(time.time()) + "\\n")
if "--fail" in args:
    print("something went wrong here")
    sys.exit(3)
for step in range(1, 4):
    with open(os.path.join(out, "progress.json"), "w") as f:
        json.dump({"step": step, "max_steps": 3, "eta_s": 0.1 * (3 - step), "done": False}, f)
    time.sleep(float(args[args.index("--sleep") + 1]))
print("threads", os.environ.get("OMP_NUM_THREADS"))
with open(os.path.join(out, "done.txt"), "w") as f:
    f.write("ok")
with open(os.path.join(out, "..", "order.txt"), "a") as f:
    f.write(os.path.basename(out) + " end " + str(time.time()) + "\\n")
"""


def _stages(tmp_path, fail=None, sleep=0.3):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    def stage(name, after=()):
        args = ["--sleep", str(sleep)] + (["--fail"] if name == fail else [])
        return Stage(name, str(script), name, args, tuple(after), ("done.txt",), expected_s=1)
    stages = [stage("a"), stage("b"), stage("c", ["a"]), stage("d", ["c", "b"])]
    return stages, {s.name: str(tmp_path / s.name) for s in stages}


def _events(tmp_path):
    rows = [line.split() for line in (tmp_path / "order.txt").read_text().splitlines()]
    return {(name, kind): float(t) for name, kind, t in rows}


def test_stages_run_in_order_two_at_a_time_and_skip_when_done(tmp_path):
    stages, dirs = _stages(tmp_path)
    lines = []
    seconds = run_stages(stages, dirs, lanes=2, threads=1, status_every=0.2, print_fn=lines.append)
    assert set(seconds) == {"a", "b", "c", "d"} and all(v > 0 for v in seconds.values())
    t = _events(tmp_path)
    assert t["a", "start"] < t["b", "end"] and t["b", "start"] < t["a", "end"]  # a and b ran at the same time
    assert t["c", "start"] >= t["a", "end"] and t["d", "start"] >= max(t["c", "end"], t["b", "end"])
    assert "threads 1" in (tmp_path / "a" / "log.txt").read_text()  # output goes to the stage's log
    status = [line for line in lines if "running:" in line]
    assert status and any("/3 (" in line for line in status) and all("to go" in line for line in status)
    again = []
    assert run_stages(stages, dirs, print_fn=again.append) == dict.fromkeys("abcd")  # every stage done: skipped
    assert all("skipped" in line for line in again)
    forced = run_stages(stages, dirs, force=["c"], print_fn=lambda line: None)
    assert forced["c"] is not None and forced["a"] is None


def test_a_failure_stops_new_stages_and_names_the_log(tmp_path):
    stages, dirs = _stages(tmp_path, fail="a")
    lines = []
    with pytest.raises(StageFailed, match=r"stage a failed \(exit 3\).*log.txt") as info:
        run_stages(stages, dirs, lanes=2, print_fn=lines.append)
    assert info.value.stage == "a" and info.value.returncode == 3
    assert any("something went wrong here" in line for line in lines)  # the end of the log is shown
    assert (tmp_path / "b" / "done.txt").is_file()  # the running stage finished
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()  # nothing after a started


def test_bad_graphs_are_refused(tmp_path):
    stages, dirs = _stages(tmp_path)
    with pytest.raises(ValueError, match="not stages"):
        run_stages([Stage("x", sys.executable, "x", after=("y",))], {"x": str(tmp_path)})
    with pytest.raises(ValueError, match="unique"):
        run_stages([stages[0], stages[0]], dirs)
    with pytest.raises(ValueError, match="force"):
        run_stages(stages, dirs, force=["zzz"])
    with pytest.raises(ValueError, match="lanes"):
        run_stages(stages, dirs, lanes=0)


def test_progress_file_callback_writes_step_and_eta(tmp_path):
    callback = ProgressFileCallback(interval=0.0)
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = SimpleNamespace(global_step=10, max_steps=50, is_world_process_zero=True)
    callback.on_train_begin(args, state, None)  # a resumed run: starts at step 10
    assert stage_progress(str(tmp_path))["eta_s"] is None
    time.sleep(0.05)
    state.global_step = 20
    callback.on_step_end(args, state, None)
    progress = stage_progress(str(tmp_path))
    assert progress["step"] == 20 and progress["max_steps"] == 50 and not progress["done"]
    assert progress["eta_s"] == pytest.approx(progress["seconds_per_step"] * 30, rel=0.05, abs=0.2)
    callback.on_train_end(args, state, None)
    assert json.loads((tmp_path / "progress.json").read_text())["done"] is True
    assert stage_progress(str(tmp_path / "missing")) is None


def test_format_seconds():
    assert format_seconds(0) == "0:00" and format_seconds(61.4) == "1:01" and format_seconds(None) == "?"
