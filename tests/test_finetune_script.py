"""run_finetune.py end to end on tiny settings: 2-process DeepSpeed ZeRO-2 on CPU (train, multi-view evaluation,
a saved model that the video-classification pipeline serves), LoRA (under 5 % trainable, merged model == adapter
model), and the frame-level baseline's indifference to frame order."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training_scripts" / "run_finetune.py"
sys.path.insert(0, str(ROOT / "training_scripts"))

# ~40 videos of 32 px (the same synthetic set as the Stage-1 tests, so one session generates it once), 4 frames.
DATA = [
    "--image_size", "32", "--num_frames", "4", "--synthetic_num_videos", "40", "--synthetic_size", "32",
    "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--dataloader_num_workers", "0",
    "--report_to", "none", "--logging_steps", "1", "--use_cpu",
]  # fmt: skip
TINY_MODEL = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--intermediate_size", "64"]


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        UMT_CACHE_DIR=str(tmp_path.parent / "umt-cache"),
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=os.environ.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".torch_extensions")),
    )
    return env


def test_two_process_deepspeed_zero2_trains_evaluates_multi_view_and_serves_a_pipeline(tmp_path):
    pytest.importorskip("deepspeed")
    out = tmp_path / "ds"
    port = str(29600 + os.getpid() % 1000)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, str(SCRIPT),
        *DATA, *TINY_MODEL, "--output_dir", str(out), "--max_steps", "3", "--eval_steps", "3", "--save_steps", "3",
        "--eval_num_clips", "2", "--eval_num_crops", "3", "--test_num_clips", "2", "--test_num_crops", "3",
        "--deepspeed", str(ROOT / "training_scripts" / "configs" / "ds_zero2.json"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 3 and all(0 < v < 10 for v in losses)
    evals = [e for e in state["log_history"] if "eval_top1" in e]
    assert evals and 0 <= evals[-1]["eval_top1"] <= evals[-1]["eval_top5"] <= 1  # validation with 2 x 3 views
    test = json.loads((out / "test_results.json").read_text())
    assert test["test_num_views"] == 6 and 0 <= test["test_top1"] <= test["test_top5"] <= 1

    # ZeRO-2 kept the layer-wise lr decay: every group's rate / its scale is the same schedule value.
    optim = glob.glob(str(out / "checkpoint-3" / "global_step3" / "*optim_states.pt"))[0]
    groups = torch.load(optim, map_location="cpu", weights_only=False)["optimizer_state_dict"]["base_optimizer_state"]
    groups = groups["param_groups"]
    base = groups[0]["lr"] / groups[0]["lr_scale"]
    assert {round(g["layer_id"]) for g in groups} == {0, 1, 2, 3}
    for g in groups:
        assert g["lr"] == pytest.approx(base * g["lr_scale"]) and g["lr_scale"] == pytest.approx(0.75 ** (3 - g["layer_id"]))

    import modeling_umt  # noqa: F401  (registers UMT with the Auto classes)
    from transformers import pipeline

    classifier = pipeline("video-classification", model=str(out / "model"))
    video = sorted(glob.glob(str(tmp_path.parent / "umt-cache" / "synthetic-*" / "videos" / "*.mp4")))[0]
    result = classifier(video, top_k=10)
    names = json.loads(next((tmp_path.parent / "umt-cache").glob("synthetic-*/info.json")).read_text())["classes"]
    assert {r["label"] for r in result} == set(names)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-4)


def test_lora_trains_few_parameters_and_the_merged_model_matches_the_adapter(tmp_path, monkeypatch):
    from peft import PeftModel

    import run_finetune
    from modeling_umt import UMTConfig, UMTForVideoClassification

    monkeypatch.setenv("UMT_CACHE_DIR", str(tmp_path.parent / "umt-cache"))
    names = ["moving left", "moving right", "moving up", "moving down", "growing", "shrinking",
             "rotating clockwise", "rotating counter-clockwise", "appearing", "disappearing"]  # fmt: skip
    config = UMTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
        patch_size=8, num_frames=4, num_labels=10, id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )  # fmt: skip
    torch.manual_seed(0)
    UMTForVideoClassification(config).save_pretrained(tmp_path / "base")

    out = tmp_path / "lora"
    result = run_finetune.main(
        [*DATA, "--model_name_or_path", str(tmp_path / "base"), "--output_dir", str(out), "--max_steps", "3",
         "--eval_strategy", "no", "--save_strategy", "no", "--use_peft", "lora", "--lora_r", "4",
         "--learning_rate", "1e-2", "--test_num_clips", "1", "--test_num_crops", "1"]  # fmt: skip
    )
    assert result["model_dir"] == str(out / "model") and (out / "adapter" / "adapter_config.json").is_file()

    base = UMTForVideoClassification.from_pretrained(tmp_path / "base", drop_path_rate=0.1).eval()
    num_base = sum(p.numel() for p in base.parameters())
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    lora = {n: p for n, p in adapted.named_parameters() if "lora_" in n}
    assert lora and any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # the adapters trained
    trainable = sum(p.numel() for p in lora.values()) + sum(
        p.numel() for n, p in adapted.named_parameters() if "modules_to_save" in n
    )
    assert trainable < 0.05 * num_base, (trainable, num_base)

    merged = UMTForVideoClassification.from_pretrained(out / "model").eval()
    x = torch.randn(3, 4, 3, 32, 32)
    with torch.no_grad():
        expected, got = adapted(pixel_values=x).logits, merged(pixel_values=x).logits
        untouched = UMTForVideoClassification.from_pretrained(tmp_path / "base").eval()(pixel_values=x).logits
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert not torch.allclose(got, untouched, atol=1e-4)  # merging changed the model
    assert (out / "model" / "video_preprocessor_config.json").is_file()


def test_frame_level_baseline_ignores_frame_order():
    from modeling_umt import UMTFrameLevelClassifier

    from modeling_umt import UMTConfig, UMTForVideoClassification

    config = UMTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
        patch_size=8, num_frames=4, num_labels=3, head_init_scale=1.0,
    )  # fmt: skip
    torch.manual_seed(0)
    frame_level = UMTFrameLevelClassifier(config).eval()
    video = UMTForVideoClassification(config).eval()
    video.load_state_dict(frame_level.state_dict())
    x = torch.randn(2, 4, 3, 16, 16)
    reverse = x.flip(1)
    with torch.no_grad():
        assert torch.allclose(frame_level(pixel_values=x).logits, frame_level(pixel_values=reverse).logits, atol=1e-5)
        assert not torch.allclose(video(pixel_values=x).logits, video(pixel_values=reverse).logits, atol=1e-4)


def test_preloaded_clips_equal_lazily_decoded_ones(tmp_path):
    from processors.datasets import load_video_records
    from processors.decoding import PreloadedVideoClips, VideoClipDecoder, decode_videos
    from processors.finetune_transforms import FinetuneTrainTransform
    from processors.synthetic import ensure_synthetic_dataset

    root = ensure_synthetic_dataset(cache_dir=tmp_path.parent / "umt-cache", num_videos=40, size=32)
    records = load_video_records(str(root / "metadata.csv"), split="val")
    decoder = VideoClipDecoder(4, sampling="sparse_train", transform=FinetuneTrainTransform(16), seed=5)
    lazy, preloaded = decode_videos(records, decoder), PreloadedVideoClips(records, decoder)
    assert len(preloaded) == len(records)
    for i in range(len(records)):  # the same per-sample draws: identical clips and labels
        assert torch.equal(preloaded[i]["pixel_values"], lazy[i]["pixel_values"])
        assert preloaded[i]["label"] == lazy[i]["label"]
