"""The main job end to end on tiny settings: every stage a real script, run two at a time, results table with the
ablation rows, figures, skip on rerun, a clear stop when a stage fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training_scripts" / "run_pipeline.py"

STAGE_ARGS = [
    "--synthetic_num_videos", "40", "--synthetic_size", "32", "--status_every", "1",
    "--stage_args", "all=--max_steps 2 --save_steps 2 --logging_steps 1 --report_to none",
    "--stage_args", "stage1*=--per_device_train_batch_size 4",
    "--stage_args", "stage2=--per_device_train_batch_size 4 --embed_dim 16",
    "--stage_args", "finetune*=--per_device_train_batch_size 4 --per_device_eval_batch_size 4 --test_num_clips 1 "
                    "--test_num_crops 1",
    "--stage_args", "retrieval=--eval_batch_size 8 --k_test 2",
]  # fmt: skip
STAGES = ("teacher", "stage1", "stage2", "finetune", "retrieval", "finetune_random_init", "finetune_frame_level",
          "finetune_teacher", "stage1_random_mask", "finetune_random_mask", "finetune_seed1",
          "finetune_random_init_seed1")


def _run(out: Path, tmp_path: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, UMT_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--output_dir", str(out), *STAGE_ARGS, *extra], env=env,
                          capture_output=True, text=True, timeout=1200, cwd=ROOT)
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_pipeline_runs_every_stage_then_skips_them_on_rerun(tmp_path):
    out = tmp_path / "pipeline"
    first = _run(out, tmp_path)
    for stage in STAGES:
        assert f"start {stage}: " in first.stdout and f"done {stage} in" in first.stdout
        assert (out / stage / "log.txt").is_file()
    assert "running: " in first.stdout and "to go" in first.stdout  # the status line
    results = json.loads((out / "results.json").read_text())
    stages = results["stages"]
    assert stages["stage1"]["features"]["model_class"] == "UMTVideoModel"
    assert stages["stage1"]["losses"]["loss"]["steps"] == 2
    assert set(stages["stage2"]["losses"]) == {"loss", "loss_vtc", "loss_vtm", "loss_mlm", "loss_uta"}
    assert 0.0 <= stages["finetune"]["test"]["test_top1"] <= 1.0
    assert 0.0 <= stages["teacher"]["zero_shot"]["zero_shot_top1"] <= 1.0
    assert {"itc", "itc+itm", "chance"} <= set(stages["retrieval"]["metrics"])
    claims = [row["claim"] for row in results["ablations"]]
    assert len(claims) == 4 and all(row["verdict"] in ("reproduced", "NOT reproduced") for row in results["ablations"])
    (metadata,) = (tmp_path / "cache").glob("synthetic-*/metadata.csv")
    num_test = sum(line.rstrip().endswith(",test") for line in metadata.read_text().splitlines())
    assert num_test > 0 and sum(sum(row) for row in results["figures"]["test_confusion"]) == num_test
    table = (out / "results.md").read_text()
    assert "## The paper's argument" in table and "semantic masking beats random masking" in table
    assert "test top-1" in table and "R@1" in table and "zero-shot" in table
    assert table.strip().splitlines()[2] in first.stdout
    for name in ("loss_curves.png", "semantic_masks.png", "confusion_matrix.png"):
        png = out / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    # the Stage-1 student learnt from the trained teacher, which any script can load as a CLIP tower
    assert json.loads((out / "teacher" / "model" / "config.json").read_text())["model_type"] == "clip_vision_model"
    assert f"hf:{out / 'teacher' / 'model'}" in (out / "stage1" / "log.txt").read_text()

    stamp = (out / "stage1" / "model" / "model.safetensors").stat().st_mtime_ns
    before = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    second = _run(out, tmp_path)
    after = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before and "nothing to do" in second.stdout  # a rerun leaves every byte as it was
    for stage in STAGES:
        assert f"[pipeline] {stage}: outputs in" in second.stdout
    assert (out / "stage1" / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_failed_stage_stops_the_pipeline_with_a_resume_hint(tmp_path):
    proc = _run(tmp_path / "p", tmp_path, "--stage_args", "stage1=--no_such_flag 1", check=False)
    assert proc.returncode != 0
    assert "stage stage1 failed" in proc.stderr and "resume" in proc.stderr
    assert "stage1 FAILED" in proc.stdout and "no_such_flag" in proc.stdout  # the end of its log is shown
    assert not (tmp_path / "p" / "results.json").exists()
    assert "start stage2" not in proc.stdout  # nothing that needs the failed stage starts


def test_unknown_stage_in_stage_args_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--output_dir", str(tmp_path / "p"), "--stage_args",
                           "stage9=--max_steps 1"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, UMT_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT)))
    assert proc.returncode != 0 and "stage9" in proc.stderr and "finetune_teacher" in proc.stderr
