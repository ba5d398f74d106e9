"""The image teacher fine-tuned as a frame-level video classifier (`TeacherFrameLevelClassifier`): loading from a
saved CLIPVisionModelWithProjection, its features, frame-order invariance, training, save / reload, layer-wise lr
decay over CLIP's parameter names, and run_finetune.py end to end on a teacher folder."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, pipeline

from modeling_umt import TeacherFrameLevelClassifier, UMTConfig, UMTForVideoClassification
from modeling_umt.model_card import read_card_metrics
from modeling_umt.teacher_classifier import is_image_tower_folder
from modeling_umt.trainers.optim import layer_decay_parameter_groups, umt_layer_id

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training_scripts"))

LABELS = {0: "left", 1: "right", 2: "still"}
# The saved folder in a fresh interpreter that cannot import this project: only the folder's own code serves it.
REMOTE = textwrap.dedent(
    """
    import json, sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_umt", "processors"):
                raise ImportError(f"{name} must not be imported by remote code")

    sys.meta_path.insert(0, Refuse())
    from transformers import pipeline

    classify = pipeline("video-classification", model=sys.argv[1], trust_remote_code=True)
    print("RESULT " + json.dumps({"scores": classify(sys.argv[2], top_k=3), "model": type(classify.model).__name__}))
    """
)


def save_tiny_teacher(folder: Path, image_size: int = 16, seed: int = 0) -> CLIPVisionModelWithProjection:
    """A random CLIPVisionModelWithProjection saved as the main job saves its trained image teacher."""
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=image_size,
        patch_size=4, projection_dim=24,
    )  # fmt: skip
    torch.manual_seed(seed)
    tower = CLIPVisionModelWithProjection(config).eval()
    tower.save_pretrained(folder)
    return tower


@pytest.fixture
def teacher(tmp_path):
    tower = save_tiny_teacher(tmp_path / "teacher")
    return tmp_path / "teacher", tower


def test_from_teacher_loads_the_tower_and_classifies_its_image_embeddings(teacher):
    folder, tower = teacher
    assert is_image_tower_folder(folder)
    torch.manual_seed(1)
    model = TeacherFrameLevelClassifier.from_teacher(folder, LABELS, num_frames=4).eval()
    assert model.config.num_labels == 3 and model.config.id2label == LABELS and model.config.num_frames == 4
    assert model.config.label2id == {"left": 0, "right": 1, "still": 2}
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        out = model(x, labels=torch.tensor([0, 2]))
        # the features are the teacher's own image embeddings, frame by frame
        expected = tower(pixel_values=x.flatten(0, 1)).image_embeds.view(2, 4, -1)
        torch.testing.assert_close(model.frame_features(x), expected, atol=1e-6, rtol=0)
        logits = model.classifier(model.fc_norm(expected.mean(1)))
    assert out.logits.shape == (2, 3) and out.loss.ndim == 0 and out.loss.dtype == torch.float32
    torch.testing.assert_close(out.logits, logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])))
    # the new head starts as UMT's: normal (std 0.02) x 0.001, zero bias; fc_norm the identity LayerNorm
    weight = model.classifier.weight
    assert 0.5 * 0.02e-3 < weight.std() < 2 * 0.02e-3 and weight.abs().max() < 6 * 0.02e-3
    assert not model.classifier.bias.any()
    assert torch.equal(model.fc_norm.weight, torch.ones(24)) and not model.fc_norm.bias.any()


def test_reversed_frames_give_the_same_logits(teacher):
    model = TeacherFrameLevelClassifier.from_teacher(teacher[0], LABELS, num_frames=4).eval()
    with torch.no_grad():
        for p in model.classifier.parameters():  # an informative head, so equal logits are not trivially ~0
            p.normal_(0, 1)
        x = torch.randn(3, 4, 3, 16, 16)
        forward, backward = model(x).logits, model(x.flip(1)).logits
    assert forward.abs().max() > 0.1
    torch.testing.assert_close(forward, backward, atol=1e-5, rtol=1e-5)  # equal up to float summation order
    with torch.no_grad():  # while a changed frame does change them
        x[:, 0] = torch.randn(3, 3, 16, 16)
        assert (model(x).logits - forward).abs().max() > 1e-3


def test_a_few_optimiser_steps_lower_the_loss(teacher):
    model = TeacherFrameLevelClassifier.from_teacher(teacher[0], LABELS, num_frames=2).train()
    torch.manual_seed(0)
    x, y = torch.randn(6, 2, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(x, labels=y).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.vision_model.encoder.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0  # the tower trains too


def test_save_and_reload_give_identical_logits(teacher, tmp_path):
    model = TeacherFrameLevelClassifier.from_teacher(teacher[0], LABELS, num_frames=4, classifier_dropout=0.2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the loaded / initial values
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "clip_vision_model" and config["architectures"] == ["TeacherFrameLevelClassifier"]
    assert config["classifier_dropout"] == 0.2 and config["num_frames"] == 4
    reloaded = TeacherFrameLevelClassifier.from_pretrained(tmp_path / "saved").eval()
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x).logits, reloaded(x).logits)
    assert reloaded.config.id2label == LABELS and reloaded.dropout.p == 0.2


def test_wrong_inputs_and_folders_fail_clearly(teacher, tmp_path):
    folder = teacher[0]
    with pytest.raises(ValueError, match=r"`image_size` 32 differs from the teacher's image_size 16"):
        TeacherFrameLevelClassifier.from_teacher(folder, LABELS, num_frames=4, image_size=32)
    model = TeacherFrameLevelClassifier.from_teacher(folder, LABELS, num_frames=4)
    with pytest.raises(ValueError, match=r"\(batch, frames, 3, 16, 16\).*\(2, 4, 3, 32, 32\)"):
        model(torch.randn(2, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(2, 4, 3, 16, 16, dtype=torch.uint8))
    # a tower without its projection has no image embedding
    from transformers import CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig.from_pretrained(folder)).save_pretrained(tmp_path / "no_projection")
    with pytest.raises(ValueError, match="expected a CLIPVisionModelWithProjection folder"):
        TeacherFrameLevelClassifier.from_teacher(tmp_path / "no_projection", LABELS, num_frames=4)
    UMTForVideoClassification(UMTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                        intermediate_size=64, image_size=16, patch_size=8, num_frames=2,
                                        num_labels=3)).save_pretrained(tmp_path / "umt")  # fmt: skip
    assert not is_image_tower_folder(tmp_path / "umt") and not is_image_tower_folder(tmp_path / "nothing")


def test_layer_ids_of_clip_names_and_unchanged_umt_names(teacher):
    L = 4
    assert umt_layer_id("vision_model.embeddings.patch_embedding.weight", L) == 0
    assert umt_layer_id("vision_model.embeddings.class_embedding", L) == 0
    assert umt_layer_id("vision_model.embeddings.position_embedding.weight", L) == 0
    assert umt_layer_id("vision_model.pre_layrnorm.bias", L) == 0
    assert umt_layer_id("vision_model.encoder.layers.0.self_attn.q_proj.weight", L) == 1
    assert umt_layer_id("vision_model.encoder.layers.3.mlp.fc2.bias", L) == 4
    assert umt_layer_id("vision_model.post_layernorm.weight", L) == L + 1
    assert umt_layer_id("visual_projection.weight", L) == L + 1
    assert umt_layer_id("fc_norm.weight", L) == L + 1 and umt_layer_id("classifier.weight", L) == L + 1

    # every parameter of a UMT classifier keeps its id: embeddings 0, block i -> i + 1, the rest L + 1
    umt = UMTForVideoClassification(UMTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                              intermediate_size=64, image_size=16, patch_size=8, num_frames=2,
                                              num_labels=3))  # fmt: skip
    for name, _ in umt.named_parameters():
        block = re.search(r"encoder\.layer\.(\d+)\.", name)
        expected = int(block.group(1)) + 1 if block else 0 if ".embeddings." in name else 3 + 1
        assert umt_layer_id(name, 3) == expected, name

    # the classifier's groups: the whole tower decays with depth, head / fc_norm / projection at the full rate
    model = TeacherFrameLevelClassifier.from_teacher(teacher[0], LABELS, num_frames=2)
    groups = layer_decay_parameter_groups(model, 1e-3, 0.05, 0.5)
    assert {g["layer_id"] for g in groups} == {0, 1, 2, 3}  # 2 blocks: ids 0 .. L + 1
    by_name = {n: g for n, p in model.named_parameters() for g in groups if any(p is q for q in g["params"])}
    assert by_name["vision_model.embeddings.patch_embedding.weight"]["lr"] == pytest.approx(1e-3 * 0.5**3)
    assert by_name["vision_model.encoder.layers.1.self_attn.k_proj.weight"]["lr"] == pytest.approx(1e-3 * 0.5)
    assert by_name["classifier.weight"]["lr"] == pytest.approx(1e-3)
    assert by_name["vision_model.embeddings.position_embedding.weight"]["weight_decay"] == 0.0  # no_weight_decay
    assert by_name["vision_model.encoder.layers.0.mlp.fc1.weight"]["weight_decay"] == 0.05


DATA = [
    "--image_size", "16", "--num_frames", "4", "--synthetic_num_videos", "40", "--synthetic_size", "32",
    "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--dataloader_num_workers", "0",
    "--report_to", "none", "--logging_steps", "1", "--use_cpu",
]  # fmt: skip


def test_run_finetune_fine_tunes_a_teacher_folder_end_to_end(tmp_path, monkeypatch):
    import run_finetune

    monkeypatch.setenv("UMT_CACHE_DIR", str(tmp_path.parent / "umt-cache"))
    save_tiny_teacher(tmp_path / "teacher")
    out = tmp_path / "run"
    args = [*DATA, "--model_name_or_path", str(tmp_path / "teacher"), "--output_dir", str(out), "--max_steps", "3",
            "--eval_steps", "3", "--save_steps", "3", "--test_num_clips", "2", "--test_num_crops", "2",
            "--frame_level"]  # fmt: skip
    result = run_finetune.main(args)
    assert result["model_dir"] == str(out / "model")
    test = json.loads((out / "test_results.json").read_text())
    assert test["test_num_views"] == 4 and 0 <= test["test_top1"] <= test["test_top5"] <= 1
    assert result["test"]["test_top1"] == test["test_top1"]
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 3 and all(0 < v < 10 for v in losses)

    names = json.loads(next((tmp_path.parent / "umt-cache").glob("synthetic-*/info.json")).read_text())["classes"]
    folder = out / "model"
    model = TeacherFrameLevelClassifier.from_pretrained(folder).eval()
    assert [model.config.id2label[i] for i in range(len(names))] == names
    assert (folder / "video_preprocessor_config.json").is_file()
    card = (folder / "README.md").read_text()
    assert "# TeacherFrameLevelClassifier" in card and "frame-level video classifier over a CLIP-style" in card
    assert f"It predicts {len(names)} classes" in card and "pipeline_tag: video-classification" in card
    assert read_card_metrics(folder)["test_top1"] == pytest.approx(test["test_top1"])
    # the folder carries its code: the card's usage line serves it
    assert {"teacher_classifier.py", "inputs.py"} <= {p.name for p in folder.glob("*.py")}
    classify = pipeline("video-classification", model=str(folder), trust_remote_code=True)
    video = sorted(glob.glob(str(tmp_path.parent / "umt-cache" / "synthetic-*" / "videos" / "*.mp4")))[0]
    scores = classify(video, top_k=len(names))
    assert {r["label"] for r in scores} == set(names)
    assert sum(r["score"] for r in scores) == pytest.approx(1.0, abs=1e-4)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run([sys.executable, "-c", REMOTE, str(folder), video], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    remote = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert remote["model"] == "TeacherFrameLevelClassifier"
    assert [r["label"] for r in remote["scores"]] == [r["label"] for r in scores[:3]]
    assert [r["score"] for r in remote["scores"]] == pytest.approx([r["score"] for r in scores[:3]], abs=1e-6)

    # a rerun finds the run finished and changes nothing
    before = (folder / "model.safetensors").read_bytes()
    again = run_finetune.main(args)
    assert again["test"]["test_top1"] == test["test_top1"] and (folder / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image_size", "32"], r"`image_size` 32 differs from the teacher's image_size 16.*--image_size 16"),
        (["--label_subset", "left,right"], r"--label_subset 'left,right' is not supported for an image tower"),
        (["--use_peft", "lora"], r"--use_peft 'lora' is not supported for an image tower"),
    ],
)
def test_run_finetune_refuses_what_a_teacher_folder_cannot_do(tmp_path, monkeypatch, extra, message):
    import run_finetune

    monkeypatch.setenv("UMT_CACHE_DIR", str(tmp_path.parent / "umt-cache"))
    save_tiny_teacher(tmp_path / "teacher")
    with pytest.raises(ValueError, match=message):
        run_finetune.main([*DATA, "--model_name_or_path", str(tmp_path / "teacher"), "--output_dir",
                           str(tmp_path / "run"), "--max_steps", "1", *extra])  # fmt: skip
