"""The main job end to end on tiny settings: four real scripts chained, results table, figures, skip on rerun."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training_scripts" / "run_pipeline.py"

COMMON = "--image_size 32 --num_frames 4 --per_device_train_batch_size 4 --dataloader_num_workers 0 --use_cpu " \
         "--report_to none --logging_steps 1"
TINY_STUDENT = "--hidden_size 32 --num_hidden_layers 3 --num_attention_heads 4 --intermediate_size 64 --patch_size 8"
STAGE_ARGS = [
    "--synthetic_num_videos", "40", "--synthetic_size", "32",
    "--stage1_args", f"{COMMON} {TINY_STUDENT} --uta_num_layers 2 --max_steps 3 --save_steps 3",
    "--stage2_args", f"{COMMON} --patch_size 8 --uta_num_layers 2 --embed_dim 16 --max_steps 3 --save_steps 3",
    "--finetune_args", f"{COMMON} --max_steps 3 --eval_steps 3 --save_steps 3 --per_device_eval_batch_size 4 "
                       "--test_num_clips 1 --test_num_crops 1",
    "--retrieval_args", "--eval_batch_size 8 --dataloader_num_workers 0",
]  # fmt: skip


def _run(out: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, UMT_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--output_dir", str(out), *STAGE_ARGS, *extra], env=env,
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_pipeline_runs_every_stage_then_skips_them_on_rerun(tmp_path):
    out = tmp_path / "pipeline"
    first = _run(out, tmp_path)
    for stage in ("stage1", "stage2", "finetune", "retrieval"):
        assert f"[pipeline] {stage}: " in first.stdout and "exist, skipped" not in first.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["stage1"]["features"]["model_class"] == "UMTVideoModel"
    assert results["stage1"]["losses"]["loss"]["steps"] == 3
    assert set(results["stage2"]["losses"]) == {"loss", "loss_vtc", "loss_vtm", "loss_mlm", "loss_uta"}
    assert 0.0 <= results["finetune"]["test"]["test_top1"] <= 1.0
    assert {"itc", "itc+itm", "chance"} <= set(results["retrieval"]["metrics"])
    table = (out / "results.md").read_text()
    assert len(table.strip().splitlines()) == 6 and "test top-1" in table and "R@1" in table  # header, rule, 4 rows
    assert table.strip() in first.stdout
    for name in ("loss_curves.png", "semantic_masks.png"):
        png = out / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    stamp = (out / "stage1" / "model" / "model.safetensors").stat().st_mtime_ns
    before = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    second = _run(out, tmp_path)
    after = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before and "nothing to do" in second.stdout  # a rerun leaves every byte as it was
    for stage in ("stage1", "stage2", "finetune", "retrieval"):
        assert f"[pipeline] {stage}: outputs in" in second.stdout and "skipped" in second.stdout
    assert (out / "stage1" / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["retrieval"]["metrics"] == results["retrieval"]["metrics"]


def test_failed_stage_stops_the_pipeline_with_a_resume_hint(tmp_path):
    env = dict(os.environ, UMT_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--output_dir", str(tmp_path / "p"), "--stage1_args", "--no_such_flag 1"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "stage1 failed" in proc.stderr and "resume" in proc.stderr
    assert not (tmp_path / "p" / "results.json").exists()
