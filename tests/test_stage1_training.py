"""Stage-1 training end to end on tiny settings: run_stage1.py in one process, with saved SigLIP and DINOv2-with-
registers teachers, resumption after a kill, and 2-process DeepSpeed ZeRO-2 / ZeRO-3 on CPU (gloo)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_teacher_transformers import _tiny

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training_scripts" / "run_stage1.py"

# A student of ~0.1 M parameters on 4 frames of 32 px, a 4x4 token grid matching the tiny teacher (patch 8).
TINY = [
    "--hidden_size", "32", "--num_hidden_layers", "3", "--num_attention_heads", "4", "--intermediate_size", "64",
    "--uta_num_layers", "2", "--patch_size", "8", "--image_size", "32", "--num_frames", "4",
    "--synthetic_num_videos", "40", "--synthetic_size", "32", "--per_device_train_batch_size", "2",
    "--dataloader_num_workers", "0", "--report_to", "none", "--logging_steps", "1", "--use_cpu",
]


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        UMT_CACHE_DIR=str(tmp_path.parent / "umt-cache"),  # shared by the tests of this session: generated once
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions")),
    )
    return env


def _losses(out_dir: Path) -> dict[int, float]:
    state = json.loads((out_dir / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def _run(args: list[str], tmp_path: Path, launcher: list[str] | None = None, timeout: int = 600):
    cmd = (launcher or [sys.executable]) + [str(SCRIPT), *TINY, *args]
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _assert_loads_quietly(model_dir: Path) -> None:
    """The saved student loads as a UMTVideoModel through AutoModel, with no load report."""
    code = (
        "import io, contextlib, logging, modeling_umt\n"
        "from transformers import AutoModel\n"
        "from transformers.utils import logging as hf_logging\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):\n"
        f"    m = AutoModel.from_pretrained({str(model_dir)!r})\n"
        "text = buf.getvalue()\n"
        "assert type(m).__name__ == 'UMTVideoModel', type(m)\n"
        "bad = [w for w in ('MISSING', 'UNEXPECTED', 'MISMATCH', 'newly initialized') if w in text]\n"
        "assert not bad, text\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_env(model_dir), capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_run_stage1_trains_logs_and_saves_loadable_student(tmp_path):
    out = tmp_path / "run"
    _run(["--output_dir", str(out), "--max_steps", "8", "--learning_rate", "3e-3", "--save_steps", "4"], tmp_path)
    losses = _losses(out)
    assert sorted(losses) == list(range(1, 9))
    assert min(list(losses.values())[-3:]) < losses[1], losses  # distillation makes progress
    state = json.loads((out / "trainer_state.json").read_text())
    first = next(e for e in state["log_history"] if "loss" in e)
    assert {"uta_layer_1", "uta_layer_2", "visible_ratio"} <= set(first)
    # 4x4 grid, 80% masked per frame: 16 - int(12.8) = 4 visible of 16
    assert first["visible_ratio"] == pytest.approx(4 / 16)
    assert (out / "checkpoint-8").is_dir() and not list(out.glob(".staging-*"))
    _assert_loads_quietly(out / "model")


def test_bf16_trainer_path_trains_and_saves_fp32_weights(tmp_path):
    """`--bf16` (the fast path of the benchmark): student under bf16 autocast, MLP activations recomputed in bf16."""
    out = tmp_path / "bf16"
    _run(["--output_dir", str(out), "--max_steps", "6", "--learning_rate", "3e-3", "--bf16"], tmp_path)
    losses = _losses(out)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses.values())
    assert min(list(losses.values())[-2:]) < losses[1], losses
    from safetensors.torch import load_file

    weights = load_file(str(out / "model" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # master weights stay fp32
    _assert_loads_quietly(out / "model")


@pytest.mark.parametrize("family,width", [("siglip", 40), ("dinov2-registers", 24)])
def test_run_stage1_with_a_saved_transformers_teacher(tmp_path, family, width):
    """A SigLIP tower and a DINOv2 tower with registers, saved to a folder, drive Stage 1 through `--teacher hf:<dir>`.

    The towers have patch 4 and were built for 32 px (an 8 x 8 grid); the student's 4 x 4 grid (32 px, patch 8) makes
    them run at 16 px (the grid rule of `modeling_umt.teachers.registry`), and the student's UTA heads take the
    teacher's width.
    """
    teacher_dir = tmp_path / family
    _tiny(family, hidden_size=width, patch_size=4).save_pretrained(teacher_dir)
    out = tmp_path / "run"
    _run(["--output_dir", str(out), "--max_steps", "2", "--teacher", f"hf:{teacher_dir}"], tmp_path)
    losses = _losses(out)
    assert sorted(losses) == [1, 2] and all(math.isfinite(v) for v in losses.values())
    state = json.loads((out / "trainer_state.json").read_text())
    assert next(e for e in state["log_history"] if "loss" in e)["visible_ratio"] == pytest.approx(4 / 16)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["uta_output_dim"] == width


def test_killed_run_resumes_and_joins_the_uninterrupted_curve(tmp_path):
    # 24 steps with a checkpoint every 4: the kill lands well before the end even on a fast idle machine.
    steps = 24
    common = ["--max_steps", str(steps), "--save_steps", "4", "--learning_rate", "3e-3", "--seed", "3"]
    full = tmp_path / "full"
    _run(["--output_dir", str(full), *common], tmp_path)

    cut = tmp_path / "cut"
    cmd = [sys.executable, str(SCRIPT), *TINY, "--output_dir", str(cut), *common]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.time() + 300
    while not (cut / "checkpoint-4" / "trainer_state.json").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # killed mid-way, as a preempted job
    proc.wait()
    assert not (cut / "model").exists(), "the run finished before it could be killed"
    resumed_from = max(int(p.name.split("-")[1]) for p in cut.glob("checkpoint-*"))
    assert resumed_from < steps

    _run(["--output_dir", str(cut), *common], tmp_path)  # picks up the last complete checkpoint by itself
    a, b = _losses(full), _losses(cut)
    assert sorted(b) == list(range(1, steps + 1))
    for step in range(resumed_from + 1, steps + 1):  # the resumed steps repeat the uninterrupted ones
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), (step, a, b)


@pytest.mark.parametrize("config", ["ds_zero2.json", "ds_zero3.json"])
def test_two_process_deepspeed_on_cpu(tmp_path, config):
    pytest.importorskip("deepspeed")
    out = tmp_path / "ds"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000 + (config == "ds_zero3.json"))]
    _run(
        [
            "--output_dir", str(out), "--max_steps", "3", "--save_steps", "3",
            "--deepspeed", str(ROOT / "training_scripts" / "configs" / config),
        ],
        tmp_path,
        launcher=launcher,
    )
    state = json.loads((out / "trainer_state.json").read_text())
    # 2 processes x batch 2 over the training split: each rank sees half the data, so 3 steps cover twice the
    # epoch fraction a single process would (the Trainer counts per-rank batches).
    table = next(Path(_env(tmp_path)["UMT_CACHE_DIR"]).glob("synthetic-*/metadata.csv"))
    with open(table, newline="") as f:
        train_rows = sum(row["split"] == "train" for row in csv.DictReader(f))
    per_rank_batches = -(-train_rows // 4)
    assert state["epoch"] == pytest.approx(3 / per_rank_batches, rel=1e-3), (state["epoch"], train_rows)
    assert len(_losses(out)) == 3
    _assert_loads_quietly(out / "model")


def test_streaming_source_needs_max_steps_and_trains(tmp_path):
    """A streamed table (the code path of a Hub id with streaming=True) trains for --max_steps."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("UMT_CACHE_DIR", _env(tmp_path)["UMT_CACHE_DIR"])
    from processors.synthetic import ensure_synthetic_dataset

    root = ensure_synthetic_dataset(cache_dir=_env(tmp_path)["UMT_CACHE_DIR"], num_videos=40, size=32)
    out = tmp_path / "stream"
    _run(["--output_dir", str(out), "--train_data", str(root / "metadata.csv"), "--streaming", "--max_steps", "2"], tmp_path)
    assert sorted(_losses(out)) == [1, 2]

    cmd = [sys.executable, str(SCRIPT), *TINY, "--output_dir", str(tmp_path / "no_steps"), "--train_data",
           str(root / "metadata.csv"), "--streaming", "--max_steps", "-1"]
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "--streaming" in proc.stderr and "--max_steps" in proc.stderr


def test_visible_teacher_features_keep_the_unmasked_tokens_of_every_layer():
    import torch

    from modeling_umt.alignment import visible_teacher_features

    features = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).view(2, 3, 5, 4)  # (K, B, N, D)
    mask = torch.tensor([[1, 0, 1, 0, 1], [0, 1, 1, 1, 0], [1, 1, 0, 0, 1]], dtype=torch.bool)
    out = visible_teacher_features(features, mask)
    assert out.shape == (2, 3, 2, 4)
    for k in range(2):
        for b in range(3):
            assert torch.equal(out[k, b], features[k, b][~mask[b]])
    assert visible_teacher_features(features, None) is features


def test_rerun_of_a_finished_run_changes_nothing(tmp_path):
    """Rerunning a finished run with the same arguments trains nothing and writes nothing (the Trainer alone would
    take a 7th step from checkpoint-6 and overwrite model/); with model/ lost in a kill during the final save, the
    rerun publishes it again from the last checkpoint, bit for bit."""
    out = tmp_path / "done"
    args = ["--output_dir", str(out), "--max_steps", "6", "--save_steps", "2", "--seed", "1"]  # 6: not an epoch's end
    _run(args, tmp_path)

    def files() -> dict:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    before = files()
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    proc = _run(args, tmp_path)
    assert "nothing to do" in proc.stdout + proc.stderr
    assert files() == before

    shutil.rmtree(out / "model")  # as if killed while publishing the final model
    _run(args, tmp_path)
    assert files() == before
