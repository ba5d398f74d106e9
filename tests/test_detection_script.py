"""run_detection.py end to end on tiny settings: the synthetic AVA set, a tiny detector fine-tuned from a Stage-1-style
checkpoint (the official layer-decay recipe), frame-mAP evaluation, and a saved model + video processor that reload
through the Auto classes; the trainer's evaluation against the evaluator directly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoVideoProcessor

from modeling_umt import UMTConfig, UMTForPreTraining, UMTForVideoActionDetection
from modeling_umt.loading import load_action_detector
from processors.rows import BadRowError
from processors.synthetic_ava import ensure_synthetic_ava_dataset
from processors.video_processing_umt_detection import UMTDetectionVideoProcessor

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training_scripts" / "run_detection.py"


def tiny_stage1(path: Path) -> Path:
    torch.manual_seed(0)
    config = UMTConfig(image_size=32, patch_size=8, num_frames=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, uta_output_dim=16, use_final_norm=True,
                       position_embedding_type="direct")
    UMTForPreTraining(config).save_pretrained(path)
    return path


def test_load_action_detector_from_stage1_keeps_encoder_and_final_norm(tmp_path):
    source = tiny_stage1(tmp_path / "stage1")
    model = load_action_detector(source, {0: "a", 1: "b"}, drop_path_rate=0.2)
    stage1 = UMTForPreTraining.from_pretrained(source)
    assert torch.equal(model.umt.layernorm.weight, stage1.umt.layernorm.weight)
    assert torch.equal(model.umt.encoder.layer[1].mlp.fc2.weight, stage1.umt.encoder.layer[1].mlp.fc2.weight)
    c = model.config
    assert (c.position_embedding_type, c.pos_embed_reference_frames, c.reference_grid) == ("interpolated", 8, 4)
    # the same table at the Stage-1 layout: the rule change does not move the positions it was trained with
    torch.testing.assert_close(model.umt.embeddings.position_embeddings, stage1.umt.embeddings.position_embeddings)
    assert c.num_labels == 2 and c.drop_path_rate == 0.2 and c.id2label == {0: "a", 1: "b"}


def test_script_trains_evaluates_and_saves_a_model_that_reloads(tmp_path):
    source = tiny_stage1(tmp_path / "stage1")
    out = tmp_path / "det"
    env = {**os.environ, "UMT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--model_name_or_path", str(source), "--output_dir", str(out),
           "--synthetic_num_videos", "16", "--short_side_size", "32", "--crop_size", "32", "--max_steps", "3",
           "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--dataloader_num_workers", "0",
           "--report_to", "none", "--logging_steps", "1", "--save_steps", "3", "--use_cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert re.search(r"^decoded [1-9]\d*, skipped 0$", proc.stdout, re.M)  # the line every script ends with
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 3 and all(0 < v < 50 for v in losses)
    results = json.loads((out / "eval_results.json").read_text())
    assert 0 <= results["eval_mAP@0.5"] <= 100
    assert {"eval_mAP@0.5/motion", "eval_mAP@0.5/appearance", "eval_AP@0.5/moving left"} <= set(results)
    model = AutoModel.from_pretrained(out / "model")
    assert isinstance(model, UMTForVideoActionDetection) and model.config.num_labels == 7
    processor = AutoVideoProcessor.from_pretrained(out / "model")
    assert isinstance(processor, UMTDetectionVideoProcessor) and processor.size["shortest_edge"] == 32
    clip = torch.randint(0, 256, (8, 3, 32, 48), dtype=torch.uint8)
    batch = processor([clip], boxes=[torch.tensor([[4.0, 4.0, 20.0, 30.0]])], return_tensors="pt")
    with torch.no_grad():
        outputs = model(batch["pixel_values"], batch["boxes"])
    (result,) = processor.post_process_action_detection(outputs, batch["boxes"], target_sizes=[(32, 48)])
    assert result["scores"].shape == (1, 7) and ((result["scores"] > 0) & (result["scores"] < 1)).all()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert rerun.returncode == 0 and "nothing to do" in rerun.stderr  # a finished run is not trained again
    assert re.search(r"^decoded [1-9]\d*, skipped 0$", rerun.stdout, re.M)


def test_script_skips_and_counts_a_bad_ava_line_or_stops_at_it_with_strict_data(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "training_scripts"))
    import run_detection

    root = ensure_synthetic_ava_dataset(cache_dir=tmp_path / "cache", num_workers=1, num_videos=16)
    ann = root / "annotations"
    train = tmp_path / "train.csv"
    lines = (ann / "train.csv").read_text().splitlines()
    train.write_text("\n".join([*lines[:2], lines[2].replace(",902,", ",9o2,"), *lines[3:]]) + "\n")
    args = ["--train_annotations", str(train), "--val_annotations", str(ann / "val.csv"),
            "--val_proposals", str(ann / "val_proposals.csv"), "--label_map", str(ann / "label_map.pbtxt"),
            "--video_template", str(root / "videos" / "{video_id}.mp4"), "--preload_videos", "True",
            "--short_side_size", "32", "--crop_size", "32", "--patch_size", "8", "--hidden_size", "16",
            "--num_hidden_layers", "1", "--num_attention_heads", "2", "--max_steps", "1", "--save_steps", "1",
            "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--dataloader_num_workers",
            "0", "--report_to", "none", "--use_cpu"]
    with pytest.raises(BadRowError, match=rf"{re.escape(str(train))}, line 3, column 'timestamp'.*'9o2'"):
        run_detection.main([*args, "--output_dir", str(tmp_path / "strict"), "--strict_data"])
    run_detection.main([*args, "--output_dir", str(tmp_path / "lenient")])
    assert re.search(r"^decoded [1-9]\d*, skipped 1 \(bad number: 1\)$", capsys.readouterr().out, re.M)
