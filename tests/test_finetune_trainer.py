"""Fine-tuning library pieces: layer-wise lr decay groups, mixup / cutmix targets, multi-view averaging, the
`evaluate` metric modules, head transfer, Stage-1 -> classifier loading, gradient checkpointing / bf16 training,
and the per-clip augmentation."""

from __future__ import annotations

import logging
import math

import evaluate
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset
from transformers import TrainingArguments

from modeling_umt import UMTConfig, UMTForPreTraining, UMTForVideoClassification
from modeling_umt.metrics import metric_path
from modeling_umt.loading import load_video_classifier, select_label_subset
from modeling_umt.trainers import (
    UMTFineTuningTrainer,
    layer_decay_parameter_groups,
    smooth_one_hot,
    soft_target_cross_entropy,
    top_k_compute_metrics,
    umt_layer_id,
)
from processors.mixing import VideoMixup
from processors.finetune_transforms import (
    FinetuneTrainTransform,
    VideoRandAugment,
    VideoRandomErasing,
    parse_rand_augment,
)
from processors.labels import read_label_file
from processors.video_processing_umt import UMTVideoProcessor

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def tiny_config(**overrides) -> UMTConfig:
    kwargs = dict(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=16,
        patch_size=8, num_frames=2, num_labels=5,
    )  # fmt: skip
    kwargs.update(overrides)
    return UMTConfig(**kwargs)


# ------------------------------------------------------------------------------------------- layer-wise lr decay


def test_layer_ids_follow_the_official_mapping():
    L = 12
    assert umt_layer_id("umt.embeddings.patch_embeddings.projection.weight", L) == 0
    assert umt_layer_id("umt.encoder.layer.0.attention.query.weight", L) == 1
    assert umt_layer_id("umt.encoder.layer.11.mlp.fc2.bias", L) == 12
    assert umt_layer_id("umt.pooler.norm.weight", L) == L + 1
    assert umt_layer_id("classifier.weight", L) == L + 1
    # official names and peft prefixes map the same way
    assert umt_layer_id("blocks.3.attn.qkv.weight", L) == 4
    assert umt_layer_id("patch_embed.proj.weight", L) == 0
    assert umt_layer_id("base_model.model.umt.encoder.layer.5.attention.value.lora_A.default.weight", L) == 6
    assert umt_layer_id("base_model.model.classifier.modules_to_save.default.weight", L) == L + 1


def test_layer_decay_group_learning_rates_are_exact():
    torch.manual_seed(0)
    model = UMTForVideoClassification(tiny_config())
    lr, ld, L = 1e-3, 0.5, 3
    groups = layer_decay_parameter_groups(model, lr, weight_decay=0.05, layer_decay=ld)
    by_param = {id(p): g for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert len(by_param) == len(names)  # every parameter exactly once
    for name, param in names.items():
        group = by_param[id(param)]
        layer = umt_layer_id(name, L)
        assert group["lr"] == lr * ld ** (L + 1 - layer), name  # values = ld ** (L + 1 - i)
        no_decay = param.ndim <= 1 or name.endswith(".bias")
        assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
    assert by_param[id(model.umt.embeddings.patch_embeddings.projection.weight)]["lr"] == lr * ld**4
    assert by_param[id(model.umt.encoder.layer[2].mlp.fc1.weight)]["lr"] == lr * ld
    assert by_param[id(model.classifier.weight)]["lr"] == lr
    assert by_param[id(model.umt.pooler.norm.weight)]["lr"] == lr
    assert groups[0]["layer_id"] == L + 1  # head first: the Trainer logs group 0's rate
    with pytest.raises(ValueError, match="layer_decay"):
        layer_decay_parameter_groups(model, lr, layer_decay=1.5)


class _RandomVideos(Dataset):
    """Deterministic random clips (T=2, 16 px) with labels in [0, 5)."""

    def __init__(self, n=8, views=None):
        g = torch.Generator().manual_seed(1)
        shape = (n, 2, 3, 16, 16) if views is None else (n, views, 2, 3, 16, 16)
        self.x = torch.randn(shape, generator=g)
        self.y = torch.arange(n) % 5

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=2,
        learning_rate=1e-3, weight_decay=0.05, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
        dataloader_num_workers=0, seed=0, lr_scheduler_type="constant_with_warmup", warmup_steps=2,
    )  # fmt: skip
    base.update(kw)
    return TrainingArguments(**base)


def test_trainer_optimizer_keeps_the_decay_ratios_through_the_schedule(tmp_path):
    torch.manual_seed(0)
    model = UMTForVideoClassification(tiny_config())
    trainer = UMTFineTuningTrainer(model=model, args=_args(tmp_path), train_dataset=_RandomVideos(), layer_decay=0.75)
    trainer.create_optimizer_and_scheduler(num_training_steps=4)
    trainer.optimizer.step()  # no gradients yet: a no-op that keeps the scheduler's order check quiet
    trainer.lr_scheduler.step()  # half-way through warm-up
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    scales = [g["lr_scale"] for g in trainer.optimizer.param_groups]
    assert lrs[0] == pytest.approx(1e-3 * 0.5)
    for lr, scale in zip(lrs, scales):
        assert lr == pytest.approx(lrs[0] * scale)
    assert min(scales) == pytest.approx(0.75**4)
    assert trainer.optimizer.defaults["betas"] == (0.9, 0.999)


# ------------------------------------------------------------------------------------------------- mixup / cutmix


def test_label_smoothing_targets():
    t = smooth_one_hot(torch.tensor([2, 0]), 4, smoothing=0.1)
    assert torch.allclose(t[0], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    assert torch.allclose(t.sum(1), torch.ones(2))
    logits = torch.randn(2, 4)
    hard = torch.nn.functional.cross_entropy(logits, torch.tensor([2, 0]), label_smoothing=0.1)
    assert soft_target_cross_entropy(logits, t) == pytest.approx(hard.item(), abs=1e-6)


def test_mixup_blends_inputs_and_targets_with_the_same_lambda():
    torch.manual_seed(0)
    x = torch.randn(4, 2, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    mix = VideoMixup(num_classes=5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1)
    mixed, targets, lam = mix(x, y)
    assert 0 < lam < 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0))
    expected = lam * smooth_one_hot(y, 5, 0.1) + (1 - lam) * smooth_one_hot(y.flip(0), 5, 0.1)
    assert torch.allclose(targets, expected)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    assert torch.equal(x, x.clone())  # input untouched


def test_cutmix_pastes_one_box_in_every_frame_and_corrects_lambda():
    torch.manual_seed(3)
    x = torch.randn(4, 3, 3, 16, 16)
    y = torch.tensor([4, 1, 2, 0])
    mix = VideoMixup(num_classes=5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    for _ in range(5):
        mixed, targets, lam = mix(x, y)
        pasted = (mixed != x).any(dim=(0, 1, 2))  # (H, W) pixels taken from the flipped batch
        rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
        if lam == 1.0:
            continue
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        box = torch.zeros(16, 16, dtype=torch.bool)
        box[top:bottom, left:right] = True
        assert torch.equal(pasted, box)  # one rectangle ...
        assert torch.equal(mixed[..., box], x.flip(0)[..., box])  # ... from the flipped batch, in every frame
        assert torch.equal(mixed[..., ~box], x[..., ~box])
        assert lam == pytest.approx(1 - box.sum().item() / 256)  # lambda = kept area
        assert torch.allclose(targets, lam * smooth_one_hot(y, 5) + (1 - lam) * smooth_one_hot(y.flip(0), 5))


def test_mixup_off_leaves_only_smoothing():
    x, y = torch.randn(2, 2, 3, 8, 8), torch.tensor([1, 3])
    mixed, targets, lam = VideoMixup(5, mixup_alpha=0, cutmix_alpha=0, label_smoothing=0)(x, y)
    assert lam == 1.0 and mixed is x and torch.equal(targets, torch.eye(5)[[1, 3]])
    with pytest.raises(ValueError, match="mixup_alpha"):
        VideoMixup(5, mixup_alpha=-1)


# ------------------------------------------------------------------------------------------ multi-view evaluation


def test_multi_view_probabilities_are_the_mean_of_per_view_softmax(tmp_path):
    torch.manual_seed(0)
    model = UMTForVideoClassification(tiny_config(head_init_scale=1.0)).eval()
    views = torch.randn(3, 6, 2, 3, 16, 16)  # 3 videos x 6 views
    with torch.no_grad():
        probs = UMTFineTuningTrainer.predict_probabilities(model, views)
        manual = torch.stack([model(pixel_values=v).logits.softmax(-1).mean(0) for v in views])
        merged = UMTVideoProcessor.merge_views(model(pixel_values=views.flatten(0, 1)).logits, 6)
    assert torch.allclose(probs, manual, atol=1e-6)
    assert torch.allclose(probs, merged, atol=1e-6)
    assert not torch.allclose(probs, model(pixel_values=views.flatten(0, 1)).logits.view(3, 6, -1).mean(1).softmax(-1))

    data = _RandomVideos(n=6, views=4)
    trainer = UMTFineTuningTrainer(
        model=model, args=_args(tmp_path), eval_dataset=data, compute_metrics=top_k_compute_metrics((1, 5))
    )
    out = trainer.predict(data)
    with torch.no_grad():
        expected = UMTFineTuningTrainer.predict_probabilities(model, data.x)
    assert np.allclose(out.predictions, expected.numpy(), atol=1e-6)
    top1 = float((expected.argmax(1) == data.y).float().mean())
    assert out.metrics["test_top1"] == pytest.approx(top1)
    assert out.metrics["test_top5"] == 1.0  # 5 classes


def test_local_evaluate_metrics():
    accuracy = evaluate.load(metric_path("accuracy"))
    assert accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]) == {"accuracy": 0.75}
    top_k = evaluate.load(metric_path("top_k_accuracy"))
    scores = [[0.1, 0.5, 0.2, 0.15, 0.05, 0.0], [0.3, 0.2, 0.1, 0.25, 0.1, 0.05]]
    assert top_k.compute(predictions=scores, references=[2, 5], k=[1, 2, 5]) == {"top1": 0.0, "top2": 0.5, "top5": 0.5}


# -------------------------------------------------------------------------------------- checkpoints and heads


def test_stage1_checkpoint_loads_as_a_classifier_without_its_final_norm(tmp_path):
    torch.manual_seed(0)
    student = UMTForPreTraining(tiny_config(use_final_norm=True, uta_num_layers=2, num_labels=2))
    student.save_pretrained(tmp_path / "stage1")
    model = load_video_classifier(tmp_path / "stage1", id2label={0: "a", 1: "b", 2: "c"}, drop_path_rate=0.1)
    assert isinstance(model, UMTForVideoClassification)
    assert model.umt.layernorm is None and model.config.num_labels == 3 and model.config.drop_path_rate == 0.1
    assert torch.equal(model.umt.encoder.layer[1].mlp.fc1.weight, student.umt.encoder.layer[1].mlp.fc1.weight)
    assert model.classifier.weight.abs().max() < 0.01  # official head init x 0.001


def test_label_subset_keeps_head_rows_in_order(tmp_path):
    torch.manual_seed(0)
    names = {i: f"class{i}" for i in range(5)}
    model = UMTForVideoClassification(tiny_config(id2label=names, label2id={v: k for k, v in names.items()}))
    model.save_pretrained(tmp_path / "k5")
    old = model.classifier.weight.detach().clone()
    new = load_video_classifier(tmp_path / "k5", label_subset=["class3", 1, "0"])
    assert torch.equal(new.classifier.weight, old[[3, 1, 0]])
    assert new.config.id2label == {0: "class3", 1: "class1", 2: "class0"} and new.config.num_labels == 3
    x = torch.randn(1, 2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(new.eval()(x).logits, model.eval()(x).logits[:, [3, 1, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="keep"):
        select_label_subset(model, ["no such class"])


# ------------------------------------------------------------------------------- training: checkpointing, bf16


def _train_losses(tmp_path, **kw) -> list[float]:
    torch.manual_seed(0)
    model = UMTForVideoClassification(tiny_config(drop_path_rate=0.1))
    trainer = UMTFineTuningTrainer(model=model, args=_args(tmp_path, max_steps=3, **kw), train_dataset=_RandomVideos())
    trainer.train()
    assert model.is_gradient_checkpointing == bool(kw.get("gradient_checkpointing"))
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


def test_gradient_checkpointing_gives_the_same_steps_and_bf16_trains(tmp_path):
    plain = _train_losses(tmp_path / "a")
    checkpointed = _train_losses(tmp_path / "b", gradient_checkpointing=True)
    assert checkpointed == pytest.approx(plain, rel=1e-5)  # same mixup draws, drop path and updates
    bf16 = _train_losses(tmp_path / "c", bf16=True)
    assert len(bf16) == 3 and all(math.isfinite(v) for v in bf16)


# ----------------------------------------------------------------------------------------------- augmentation


def test_rand_augment_applies_the_same_ops_to_every_frame():
    frame = torch.randint(0, 256, (1, 3, 24, 24), dtype=torch.uint8)
    clip = frame.repeat(6, 1, 1, 1)
    ra = VideoRandAugment(magnitude=7, num_ops=4, prob=1.0)
    for seed in range(10):
        out = ra(clip, torch.Generator().manual_seed(seed))
        assert out.dtype == torch.uint8 and out.shape == clip.shape
        assert (out == out[:1]).all()
    changed = sum(not torch.equal(ra(clip, torch.Generator().manual_seed(s)), clip) for s in range(10))
    assert changed >= 8
    assert parse_rand_augment("rand-m7-n4-mstd0.5-inc1").num_ops == 4
    assert parse_rand_augment("none") is None
    with pytest.raises(ValueError, match="rand_augment"):
        parse_rand_augment("rand-m7-x3")


def test_train_transform_order_shapes_and_clip_consistency():
    frame = torch.randint(0, 256, (1, 3, 40, 48), dtype=torch.uint8)
    clip = frame.repeat(4, 1, 1, 1)
    transform = FinetuneTrainTransform(32, erase_prob=1.0)
    for seed in range(5):
        out = transform(clip, torch.Generator().manual_seed(seed))
        assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
        # identical frames stay identical outside the erased box (its noise differs per frame, the box does not)
        same = (out == out[:1]).all(0).all(0)
        assert same.float().mean() > 0.5 and (~same).any()
        rows, cols = (~same).any(1).nonzero().flatten(), (~same).any(0).nonzero().flatten()
        assert (~same).sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one rectangle
    # flip off and no augmentation: a full-area crop is the normalised clip resized
    plain = FinetuneTrainTransform(48, rand_augment=None, scale=(1.0, 1.0), ratio=(1.2, 1.2), flip_prob=0, erase_prob=0)
    assert plain(clip).shape == (4, 3, 48, 48)


def test_random_erasing_box_and_probability():
    erase = VideoRandomErasing(prob=0.25)
    hits = sum(erase.box(32, 32, torch.Generator().manual_seed(s)) is not None for s in range(400))
    assert 70 < hits < 130
    for s in range(50):
        box = VideoRandomErasing(prob=1.0).box(32, 32, torch.Generator().manual_seed(s))
        if box is not None:
            top, left, h, w = box
            assert 0.02 * 1024 * 0.8 <= h * w <= 1024 / 3 * 1.2 and top + h <= 32 and left + w <= 32


def test_read_label_file_formats(tmp_path):
    (tmp_path / "a.txt").write_text("jump\nrun\n\nswim\n")
    (tmp_path / "b.json").write_text('{"run": 1, "jump": 0}')
    (tmp_path / "c.json").write_text('{"0": "x", "1": "y"}')
    (tmp_path / "d.json").write_text('["p", "q"]')
    assert read_label_file(tmp_path / "a.txt") == ["jump", "run", "swim"]
    assert read_label_file(tmp_path / "b.json") == ["jump", "run"]
    assert read_label_file(tmp_path / "c.json") == ["x", "y"]
    assert read_label_file(tmp_path / "d.json") == ["p", "q"]
    (tmp_path / "e.json").write_text('{"a": 0, "b": 2}')
    with pytest.raises(ValueError, match="without gaps"):
        read_label_file(tmp_path / "e.json")


# ------------------------------------------------------------------------------------------------- the visible recipe
def test_trainer_takes_label_smoothing_from_training_arguments_and_logs_its_recipe(tmp_path, caplog):
    model = UMTForVideoClassification(tiny_config())
    with caplog.at_level(logging.INFO, logger="modeling_umt.trainers.finetuning"):
        trainer = UMTFineTuningTrainer(model=model, args=_args(tmp_path, label_smoothing_factor=0.2),
                                       train_dataset=_RandomVideos())
    assert trainer.mixup.label_smoothing == 0.2 and trainer.recipe["label_smoothing"] == 0.2
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Fine-tuning recipe")]
    assert logged == ["Fine-tuning recipe: layer_decay=0.75, mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=1.0, "
                      "mixup_switch_prob=0.5, label_smoothing=0.2"]
    plain = UMTFineTuningTrainer(model=model, args=_args(tmp_path), train_dataset=_RandomVideos())
    assert plain.mixup.label_smoothing == 0.0  # transformers' default 0: no hidden smoothing
    with pytest.raises(ValueError, match="`label_smoothing` 0.1 disagrees with TrainingArguments.label_smoothing_factor"):
        UMTFineTuningTrainer(model=model, args=_args(tmp_path, label_smoothing_factor=0.2),
                             train_dataset=_RandomVideos(), label_smoothing=0.1)
