"""modeling_umt.cli: the argument dataclasses the training scripts share, the teacher they build, where their data
comes from, and running one script from another as a subprocess (no script imports another)."""

from __future__ import annotations

import ast
import csv
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from transformers import HfArgumentParser

from modeling_umt import UMTConfig
from modeling_umt.cli import (
    BatchScaledTrainingArguments, ScriptTrainingArguments, StudentShapeArguments, TeacherArguments,
    VideoDataArguments, check_teacher_grid, load_split_records, parse_script_arguments, run_script,
    scale_learning_rate_by_batch,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "training_scripts").glob("*.py"))


def test_no_training_script_imports_another():
    names = {path.stem for path in SCRIPTS}
    for path in SCRIPTS:
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & names, f"{path.name} imports the script(s) {sorted(imported & names)}"


@dataclass
class _Data(VideoDataArguments):
    num_frames: int = field(default=4, metadata={"help": "Frames per clip (this script's default)."})
    synthetic_num_videos: int = field(default=1000, metadata={"help": "Size of the default synthetic dataset."})


@dataclass
class _Training(BatchScaledTrainingArguments):
    output_dir: str = field(default="outputs/test")


def test_subclasses_keep_shared_fields_and_override_defaults(tmp_path):
    model, teacher, data, training = parse_script_arguments(
        (StudentShapeArguments, TeacherArguments, _Data, _Training),
        ["--hidden_size", "32", "--mask_ratio", "0.5", "--image_size", "32", "--use_cpu", "--report_to", "none"],
    )
    assert model.shape() == dict(hidden_size=32, num_hidden_layers=6, num_attention_heads=3, intermediate_size=768)
    assert teacher.teacher == "tiny-random" and teacher.mask_ratio == 0.5
    assert (data.num_frames, data.synthetic_num_videos, data.synthetic_size, data.image_size) == (4, 1000, 64, 32)
    assert training.output_dir == "outputs/test" and training.seed == 0 and training.lr_scheduler_type == "cosine"
    assert training.warmup_steps == 0.1 and training.remove_unused_columns is False and not training.scale_lr_by_batch
    assert issubclass(_Training, ScriptTrainingArguments)
    help_text = HfArgumentParser((_Data,)).format_help()
    assert "this script's default" in help_text and "--max_bad_fraction" in help_text


def test_scale_learning_rate_by_batch_applies_the_official_rule_only_when_asked(tmp_path):
    args = _Training(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=16, learning_rate=1e-3,
                     gradient_accumulation_steps=2, report_to="none")  # fmt: skip
    scale_learning_rate_by_batch(args)
    assert args.learning_rate == 1e-3
    args.scale_lr_by_batch = True
    scale_learning_rate_by_batch(args)
    assert args.learning_rate == pytest.approx(1e-3 * 32 / 256)


def test_streaming_needs_max_steps(tmp_path):
    training = _Training(output_dir=str(tmp_path), use_cpu=True, max_steps=-1, report_to="none")
    VideoDataArguments(streaming=False).check_streaming(training)
    with pytest.raises(ValueError, match="--streaming"):
        VideoDataArguments(streaming=True).check_streaming(training)


def test_train_source_is_the_given_data_when_there_is_some(tmp_path):
    training = _Training(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert VideoDataArguments(train_data="my.csv").train_source(training) == ("my.csv", None)


def test_teacher_arguments_build_the_named_teacher_and_check_the_grid():
    teacher = TeacherArguments().build(num_layers=2, image_size=32, patch_size=8)
    assert teacher.num_patches == 16
    check_teacher_grid(teacher, UMTConfig(image_size=32, patch_size=8, num_frames=2))
    with pytest.raises(ValueError, match="16 patches per frame but the student 4"):
        check_teacher_grid(teacher, UMTConfig(image_size=32, patch_size=16, num_frames=2))
    with pytest.raises(ValueError, match="--teacher_autocast.*'fp8'"):
        TeacherArguments(teacher_autocast="fp8").build(num_layers=2, image_size=32, patch_size=8)


def test_teacher_arguments_choose_the_teacher_attention_and_bf16_weights():
    teacher = TeacherArguments(teacher_autocast="bf16", teacher_attn_implementation="umt_cpu_bf16").build(
        num_layers=2, image_size=32, patch_size=8
    )
    assert teacher.attn_implementation == "umt_cpu_bf16"
    assert teacher.vision.conv1.weight.dtype == torch.bfloat16 and teacher.vision.ln_post.weight.dtype == torch.float32
    assert TeacherArguments().build(num_layers=2, image_size=32, patch_size=8).attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="--teacher_attn_implementation.*'flash'"):
        TeacherArguments(teacher_attn_implementation="flash").build(num_layers=2, image_size=32, patch_size=8)


def test_load_split_records_applies_a_split_to_tables_only(tmp_path):
    table = tmp_path / "videos.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "label", "split"])
        writer.writerows([["a.mp4", 0, "train"], ["b.mp4", 1, "test"], ["c.mp4", 0, "train"]])
    assert [Path(r["video"]).name for r in load_split_records(str(table), None, "train")] == ["a.mp4", "c.mp4"]
    assert len(load_split_records(str(table), None, None)) == 3
    folder = tmp_path / "classes"
    for name in ("left", "right"):
        (folder / name).mkdir(parents=True)
        (folder / name / "clip.mp4").write_bytes(b"")
    assert len(load_split_records(str(folder), "folder", "train")) == 2  # class folders have no splits


def test_run_script_runs_in_a_fresh_process_and_reports_failure(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text("import os, sys\nopen(sys.argv[1], 'w').write(os.environ['UMT_TEST_VALUE'])\n"
                      "sys.exit(int(sys.argv[2]))\n")  # fmt: skip
    seconds = run_script(script, [str(tmp_path / "out.txt"), "0"], env={"UMT_TEST_VALUE": "seen"})
    assert seconds >= 0 and (tmp_path / "out.txt").read_text() == "seen"
    with pytest.raises(subprocess.CalledProcessError) as failure:
        run_script(script, [str(tmp_path / "out.txt"), "3"], env={"UMT_TEST_VALUE": "x"}, cwd=tmp_path)
    assert failure.value.returncode == 3 and failure.value.cmd[:2] == [sys.executable, str(script)]
