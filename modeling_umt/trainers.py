"""Trainers for UMT: Stage-1 distillation (and, as they land, vision-language training and fine-tuning).

Each trainer is a thin `transformers.Trainer` subclass: the Trainer keeps the loop, checkpointing, resumption,
logging, DDP / DeepSpeed / accelerate; the subclasses add what UMT needs — the frozen teacher, the semantic mask,
the per-term losses in the logs, and the official parameter groups.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict

import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .masking import random_mask, semantic_mask, tube_mask
from .metrics import metric_path
from .modeling_umt import gather_visible


def decay_parameter_names(model: nn.Module, extra_no_decay: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Names of the parameters that get weight decay, by the official rule (optim_factory.get_parameter_groups):
    every parameter with 2 or more dimensions except those named in `extra_no_decay` / `model.no_weight_decay()`.
    Biases, LayerNorm weights and other 1-D parameters (and 0-D ones) get none."""
    skip = set(extra_no_decay)
    if hasattr(model, "no_weight_decay"):
        skip |= set(model.no_weight_decay())
    return [
        name
        for name, p in model.named_parameters()
        if p.ndim >= 2 and not any(name == s or name.endswith("." + s) for s in skip)
    ]


class _UMTParameterGroupsMixin:
    """Official parameter groups: weight decay only on >= 2-D parameters."""

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return decay_parameter_names(model)


class _AtomicCheckpointMixin:
    """Checkpoints appear whole or not at all: each is written under a hidden staging folder of the output
    directory, then renamed into place once every process has finished writing. A run killed while saving leaves
    only the staging folder, which `get_last_checkpoint` never picks up and the next save replaces."""

    _staging_run_dir: str | None = None

    def _get_output_dir(self, trial):
        if self._staging_run_dir is not None:
            return self._staging_run_dir
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, f".staging-{name}")
        if self.args.should_save and os.path.isdir(staging):
            shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()
        self._staging_run_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_run_dir = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = os.path.join(run_dir, name)
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging, ignore_errors=True)
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()

    def train_resuming(self):
        """`train()` from `args.resume_from_checkpoint`, else from the last complete checkpoint in `args.output_dir`
        (so rerunning an interrupted command resumes it), then log and save the train metrics and state."""
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = self.args.resume_from_checkpoint
        if checkpoint is None and os.path.isdir(self.args.output_dir):
            checkpoint = get_last_checkpoint(self.args.output_dir)
        result = self.train(resume_from_checkpoint=checkpoint)
        self.log_metrics("train", result.metrics)
        self.save_metrics("train", result.metrics)
        self.save_state()
        return result

    def save_model_atomic(self, output_dir: str) -> None:
        """`save_model` into a temporary sibling folder, then rename it to `output_dir` (replacing an older one)."""
        output_dir = os.path.abspath(output_dir)
        tmp = os.path.join(os.path.dirname(output_dir), f".tmp-{os.path.basename(output_dir)}")
        if self.args.should_save and os.path.isdir(tmp):
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self.save_model(tmp)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            if os.path.isdir(output_dir):
                shutil.rmtree(output_dir)
            os.replace(tmp, output_dir)
        self.accelerator.wait_for_everyone()


class _StepSeededRandomnessMixin:
    """Every training micro-step draws its randomness (masks, drop path, dropout) from a generator seeded by
    (seed, step, micro-step, process), and restores the global RNG afterwards. A resumed run therefore repeats
    exactly the steps an uninterrupted run would take, whatever the data loader consumed in between, and each
    process of a distributed run still draws different masks."""

    _micro_step = 0
    _micro_step_of = -1

    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        self._micro_step = self._micro_step + 1 if self._micro_step_of == step else 0
        self._micro_step_of = step
        seed = hash((self.args.seed, step, self._micro_step, self.args.process_index)) % (2**63)
        devices = [self.args.device] if self.args.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return super().training_step(model, inputs, num_items_in_batch)


class _MetricAccumulator:
    """Running means of extra scalars between two Trainer log events (the Trainer only averages `loss` itself)."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] += float(v)
        self.count += 1

    def pop(self) -> dict[str, float]:
        if not self.count:
            return {}
        out = {k: round(v / self.count, 6) for k, v in self.sums.items()}
        self.sums.clear()
        self.count = 0
        return out


def scale_learning_rate(base_lr: float, global_batch_size: int, reference: int = 256) -> float:
    """The official linear lr scaling: base_lr x global batch / 256 (e.g. 1.5e-4 x 2048 / 256 = 1.2e-3)."""
    if global_batch_size <= 0:
        raise ValueError(f"`global_batch_size` must be positive, got {global_batch_size}.")
    return base_lr * global_batch_size / reference


def visible_teacher_features(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Teacher targets (K, B, N, D) -> (K, B, N_vis, D) for the tokens the mask keeps (all of them without a mask).

    Gathering right after masking lets the full-token targets be freed before the student runs: at 80% masking they
    are five times larger than what UTA reads."""
    if mask is None:
        return features
    k, b, n, d = features.shape
    return gather_visible(features.reshape(k * b, n, d), mask.repeat(k, 1)).view(k, b, -1, d)


class UMTDistillationTrainer(_AtomicCheckpointMixin, _StepSeededRandomnessMixin, _UMTParameterGroupsMixin, Trainer):
    """Stage 1: align the unmasked tokens of a `UMTForPreTraining` student with a frozen image teacher.

    Each step: teacher(video) -> last-K features (K, B, N, D_t) and class-token attention (B, T, HW);
    mask from the attention (`mask_type="attention"`, official), or random / tube; student(video, mask) -> UTA loss.

    Args:
        teacher: a frozen `UMTTeacher` (kept outside `model`, so it is never optimised, saved or ZeRO-partitioned).
        mask_type: "attention" (semantic), "random" or "tube".
        mask_ratio: fraction of tokens dropped (0.8 in every official run).
        Other arguments are `transformers.Trainer`'s. Use AdamW betas (0.9, 0.95), weight decay 0.05 and a cosine
        schedule with warm-up through `TrainingArguments` (see `training_scripts/run_stage1.py`).

    Logged besides `loss`: `uta_layer_{i}` (per aligned layer, ascending block index) and `visible_ratio`.
    """

    def __init__(self, *args, teacher: nn.Module, mask_type: str = "attention", mask_ratio: float = 0.8, **kwargs):
        super().__init__(*args, **kwargs)
        if mask_type not in ("attention", "random", "tube"):
            raise ValueError(f"`mask_type` must be 'attention', 'random' or 'tube', got {mask_type!r}.")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"`mask_ratio` must be in [0, 1), got {mask_ratio}.")
        self.teacher = teacher.to(self.args.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.mask_type = mask_type
        self.mask_ratio = mask_ratio
        self._metrics = _MetricAccumulator()

    def make_mask(self, cls_attention: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, T, HW) teacher attention -> (B, T*HW) bool mask, True = dropped."""
        b, t, hw = cls_attention.shape
        if self.mask_type == "attention":
            return semantic_mask(cls_attention, self.mask_ratio)
        if self.mask_type == "random":
            return random_mask(b, t * hw, self.mask_ratio, device=cls_attention.device)
        return tube_mask(b, t, hw, self.mask_ratio, device=cls_attention.device)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        pixel_values = inputs["pixel_values"]
        with torch.no_grad():
            target = self.teacher(pixel_values)
        mask = self.make_mask(target.cls_attention, pixel_values.shape[1])
        targets = visible_teacher_features(target.hidden_states, mask)
        del target  # only the visible tokens' targets stay alive through the student's forward and backward
        outputs = model(pixel_values=pixel_values, bool_masked_pos=mask, teacher_features=targets)
        if model.training:
            unwrapped = self.accelerator.unwrap_model(model)
            layers = unwrapped.config.uta_layer_indices if hasattr(unwrapped, "config") else range(len(outputs[1]))
            metrics = {f"uta_layer_{i}": v for i, v in zip(layers, outputs.uta_loss_per_layer.detach().tolist())}
            metrics["visible_ratio"] = (~mask).float().mean().item()
            self._metrics.add(metrics)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation reports the UTA loss only (there are no logits to compare)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log event: attach the running means since the previous one
            logs.update(self._metrics.pop())
        super().log(logs, start_time)


__all__ = ["UMTDistillationTrainer", "decay_parameter_names", "scale_learning_rate", "visible_teacher_features"]


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: vision-language training (VTC + VTM + MLM + UTA)
# ----------------------------------------------------------------------------------------------------------------
def stage2_decay_parameter_names(model: nn.Module) -> list[str]:
    """Official Stage-2 rule (`utils/optimizer.py`): no weight decay for 1-D parameters and biases; everything else,
    including the 0-dim temperature, gets it."""
    return [name for name, p in model.named_parameters() if not (p.ndim == 1 or name.endswith(".bias"))]


class MediaInterleavedLoader:
    """The official MetaLoader: one data loader per media type ("video", "image", ...), every batch from one of them,
    the order of media shuffled each epoch with a generator seeded by (seed, epoch), so every process takes the same
    media at the same step. `len` is the sum of the loaders' lengths; each loader is consumed exactly once per epoch."""

    def __init__(self, loaders: dict[str, object], seed: int = 0):
        if not loaders:
            raise ValueError("`loaders` must name at least one media type.")
        self.loaders, self.seed, self.epoch = dict(loaders), seed, 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders.values())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for loader in self.loaders.values():
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)

    def order(self) -> list[str]:
        """The media type of every batch of the current epoch."""
        names = [name for name, loader in self.loaders.items() for _ in range(len(loader))]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]

    def __iter__(self):
        iterators = {name: iter(loader) for name, loader in self.loaders.items()}
        for name in self.order():
            yield next(iterators[name])


class UMTVisionLanguageTrainer(_AtomicCheckpointMixin, _StepSeededRandomnessMixin, Trainer):
    """Stage 2: train a `UMTForVideoTextRetrieval` with VTC, VTM (hard negatives), MLM and UTA (official §5.3-5.4).

    Each step: the frozen teacher (optional) gives the last-K targets and class-token attention of the batch; a
    semantic mask drops `video_mask_ratio` (0.8) of every frame's tokens for videos and `image_mask_ratio` (0.5) for
    images (T = 1); the student sees only the visible tokens for every loss; the model returns the four losses,
    weighted by its config (default 1 each). Without a teacher there is no mask and no UTA (the official retrieval
    fine-tuning, `clip_teacher="none"`).

    Args:
        teacher: a frozen `UMTTeacher` or None. Kept outside the model (never optimised, saved or ZeRO-partitioned).
        mask_type: "attention" (semantic, official), "random" or "tube".
        video_mask_ratio, image_mask_ratio: fractions of tokens dropped per frame.
        train_dataset: one dataset, or a dict {media name: dataset} (e.g. {"video": ..., "image": ...}); with a
            dict every batch comes from one media type, interleaved in a shuffled order (`MediaInterleavedLoader`).
        Other arguments are `transformers.Trainer`'s; the official optimiser is AdamW lr 1e-4 (absolute), betas
        (0.9, 0.999), weight decay 0.02, cosine with warm-up (see `training_scripts/run_stage2.py`). Weight decay
        follows the official rule: none on 1-D parameters and biases, applied to the temperature.

    Inputs per batch (`processors.video_text.VideoTextCollator`): pixel_values (B, T, C, H, W), input_ids and
    attention_mask (B, L), optional ids (B,). Logged besides `loss`: loss_vtc, loss_vtm, loss_mlm, loss_uta (each
    unweighted), temperature, visible_ratio, and image_batches (fraction of steps on images since the last log).
    """

    def __init__(
        self,
        *args,
        teacher: nn.Module | None = None,
        mask_type: str = "attention",
        video_mask_ratio: float = 0.8,
        image_mask_ratio: float = 0.5,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if mask_type not in ("attention", "random", "tube"):
            raise ValueError(f"`mask_type` must be 'attention', 'random' or 'tube', got {mask_type!r}.")
        for name, ratio in (("video_mask_ratio", video_mask_ratio), ("image_mask_ratio", image_mask_ratio)):
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {ratio}.")
        self.teacher = None
        if teacher is not None:
            self.teacher = teacher.to(self.args.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.mask_type, self.video_mask_ratio, self.image_mask_ratio = mask_type, video_mask_ratio, image_mask_ratio
        self._metrics = _MetricAccumulator()

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return stage2_decay_parameter_names(model)

    def get_train_dataloader(self):
        if not isinstance(self.train_dataset, dict):
            return super().get_train_dataloader()
        loaders = {}
        full = self.train_dataset
        try:
            for name, dataset in full.items():
                self.train_dataset = dataset
                loaders[name] = super().get_train_dataloader()
        finally:
            self.train_dataset = full
        return MediaInterleavedLoader(loaders, seed=self.args.seed)

    def make_mask(self, cls_attention: torch.Tensor) -> torch.Tensor:
        """(B, T, HW) teacher attention -> (B, T*HW) bool mask, True = dropped; the ratio depends on T (1 = image)."""
        b, t, hw = cls_attention.shape
        ratio = self.image_mask_ratio if t == 1 else self.video_mask_ratio
        if self.mask_type == "attention":
            return semantic_mask(cls_attention, ratio)
        if self.mask_type == "random":
            return random_mask(b, t * hw, ratio, device=cls_attention.device)
        return tube_mask(b, t, hw, ratio, device=cls_attention.device)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        pixel_values = inputs["pixel_values"]
        mask = targets = None
        if self.teacher is not None:
            with torch.no_grad():
                target = self.teacher(pixel_values)
            mask = self.make_mask(target.cls_attention)
            targets = visible_teacher_features(target.hidden_states, mask)
            del target
        outputs = model(
            pixel_values=pixel_values,
            input_ids=inputs["input_ids"],
            attention_mask=inputs.get("attention_mask"),
            ids=inputs.get("ids"),
            bool_masked_pos=mask,
            teacher_features=targets,
            return_loss=True,
        )
        if model.training:
            metrics = {
                name: getattr(outputs, name).detach().item()
                for name in ("loss_vtc", "loss_vtm", "loss_mlm", "loss_uta")
                if getattr(outputs, name) is not None
            }
            unwrapped = self.accelerator.unwrap_model(model)
            if hasattr(unwrapped, "temp"):
                metrics["temperature"] = float(unwrapped.temp.detach())
            metrics["visible_ratio"] = 1.0 if mask is None else (~mask).float().mean().item()
            metrics["image_batches"] = float(pixel_values.shape[1] == 1)
            self._metrics.add(metrics)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation reports the Stage-2 loss only (retrieval metrics come from `training_scripts/run_retrieval.py`)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._metrics.pop())
        super().log(logs, start_time)


__all__ += ["MediaInterleavedLoader", "UMTVisionLanguageTrainer", "stage2_decay_parameter_names"]


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning: layer-wise lr decay, mixup / cutmix with label smoothing, multi-view evaluation (official §4.3, §6.2)
# ----------------------------------------------------------------------------------------------------------------
import math  # noqa: E402
import re as _re  # noqa: E402
from collections.abc import Sequence as _Sequence  # noqa: E402

from transformers.utils import logging as _hf_logging  # noqa: E402

_finetune_logger = _hf_logging.get_logger(__name__)

_BLOCK_ID = _re.compile(r"(?:^|\.)(?:encoder\.layer|blocks)\.(\d+)\.")
_EMBEDDING_NAMES = _re.compile(r"(?:^|\.)(?:embeddings|patch_embed|pos_embed|cls_token|mask_token)(?:\.|$)")


def umt_layer_id(name: str, num_layers: int) -> int:
    """Layer id of a parameter for layer-wise lr decay (official `get_num_layer_for_vit`).

    Patch / position embeddings (and `cls_token`, `mask_token`) -> 0; block i (`encoder.layer.i.`, or the official
    `blocks.i.`) -> i + 1; everything else (`pooler.norm` = fc_norm, `classifier` = head, a final norm) -> L + 1.
    Prefixes such as `umt.` or peft's `base_model.model.` do not matter.
    """
    block = _BLOCK_ID.search(name)
    if block is not None:
        return int(block.group(1)) + 1
    if _EMBEDDING_NAMES.search(name):
        return 0
    return num_layers + 1


def layer_decay_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.05,
    layer_decay: float | None = 0.75,
    num_layers: int | None = None,
    decay_names: _Sequence[str] | None = None,
) -> list[dict]:
    """Optimizer parameter groups with layer-wise lr decay and the official weight-decay rule.

    Layer id i (`umt_layer_id`) gets lr = learning_rate * layer_decay ** (L + 1 - i): the head and fc_norm train at
    `learning_rate`, block L - 1 at x layer_decay, ..., the patch embedding at x layer_decay ** (L + 1). Within each
    layer, biases, norms and other 1-D parameters get no weight decay (`decay_parameter_names`). Frozen parameters
    are left out. `layer_decay` None or 1 gives every group the same lr.

    Returns:
        list of dicts {"params", "lr", "weight_decay", "lr_scale", "layer_id"}, the head's layer first (so the
        Trainer's logged `learning_rate`, taken from group 0, is the base rate), then descending layer ids.
    """
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ValueError(f"`layer_decay` must be in (0, 1] or None, got {layer_decay}.")
    if num_layers is None:
        config = getattr(model, "config", None)
        num_layers = getattr(config, "num_hidden_layers", None)
        if num_layers is None:
            raise ValueError("`num_layers` must be given for a model without `config.num_hidden_layers`.")
    decay = set(decay_parameter_names(model) if decay_names is None else decay_names)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = umt_layer_id(name, num_layers)
        scale = 1.0 if layer_decay is None else layer_decay ** (num_layers + 1 - layer)
        key = (layer, name in decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "lr": learning_rate * scale,
                "weight_decay": weight_decay if key[1] else 0.0,
                "lr_scale": scale,
                "layer_id": layer,
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: (-k[0], not k[1]))]


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets: mean over the batch of sum_k -targets[k] * log_softmax(logits)[k].

    logits (B, K), targets (B, K) rows summing to 1 -> scalar float32 (computed in float32 under fp16 / bf16).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"`targets` must have the shape of `logits` {tuple(logits.shape)}, got {tuple(targets.shape)}.")
    return torch.sum(-targets.float() * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) class ids -> (B, K) float32 targets: 1 - smoothing + smoothing / K on the class, smoothing / K elsewhere."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


class VideoMixup:
    """Mixup / CutMix for video batches with label-smoothed soft targets (official `datasets/mixup.py`, batch mode).

    For each batch, with probability `prob`: CutMix with probability `switch_prob` (when both are on), else Mixup.
    Mixup: lam ~ Beta(mixup_alpha, mixup_alpha); x = lam * x + (1 - lam) * x.flip(0). CutMix: lam ~
    Beta(cutmix_alpha, cutmix_alpha); one box of side sqrt(1 - lam) x (H, W) centred at a uniform point, clipped to
    the frame, the same box in every frame, filled from the flipped batch; lam is then corrected to the kept area.
    Targets: lam * smooth(y) + (1 - lam) * smooth(y.flip(0)). An alpha of 0 disables that mix; both 0 (or prob 0)
    leaves only label smoothing.

    Randomness comes from torch's global generator (seeded per step by `UMTFineTuningTrainer`).

    Call: pixel_values (B, T, C, H, W), labels (B,) -> (mixed pixel_values (B, T, C, H, W), targets (B, K) float32,
    lam float). The input tensor is not modified.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        correct_lam: bool = True,
    ):
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0, got {value}.")
        for name, value in (("prob", prob), ("switch_prob", switch_prob), ("label_smoothing", label_smoothing)):
            if not 0 <= value <= 1:
                raise ValueError(f"`{name}` must be in [0, 1], got {value}.")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing, self.correct_lam = prob, switch_prob, label_smoothing, correct_lam

    @property
    def active(self) -> bool:
        """Whether any mixing can happen (otherwise only label smoothing is applied)."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    @staticmethod
    def _beta(alpha: float) -> float:
        return float(torch.distributions.Beta(alpha, alpha).sample())

    def draw(self) -> tuple[float, bool]:
        """(lam, use_cutmix) for one batch; lam = 1 means no mixing."""
        if not self.active or float(torch.rand(())) >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = float(torch.rand(())) < self.switch_prob
        else:
            use_cutmix = self.cutmix_alpha > 0
        return self._beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha), use_cutmix

    @staticmethod
    def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the CutMix box for `lam`: sides int(sqrt(1 - lam) * (H, W)), centre uniform."""
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        return top, bottom, left, right

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        if pixel_values.ndim != 5 or labels.shape != pixel_values.shape[:1]:
            raise ValueError(
                f"`pixel_values` must be (B, T, C, H, W) with `labels` (B,), got {tuple(pixel_values.shape)} and "
                f"{tuple(labels.shape)}."
            )
        lam, use_cutmix = self.draw()
        if lam < 1.0:
            if use_cutmix:
                top, bottom, left, right = self.cutmix_box(pixel_values.shape[-2], pixel_values.shape[-1], lam)
                pixel_values = pixel_values.clone()
                pixel_values[..., top:bottom, left:right] = pixel_values.flip(0)[..., top:bottom, left:right]
                if self.correct_lam:
                    area = (bottom - top) * (right - left)
                    lam = 1.0 - area / float(pixel_values.shape[-2] * pixel_values.shape[-1])
            else:
                pixel_values = pixel_values * lam + pixel_values.flip(0) * (1.0 - lam)
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        if lam < 1.0:
            targets = targets * lam + targets.flip(0) * (1.0 - lam)
        return pixel_values, targets, lam


class UMTFineTuningTrainer(_AtomicCheckpointMixin, _StepSeededRandomnessMixin, Trainer):
    """Fine-tune a `UMTForVideoClassification` with the official recipe (official_umt.md §4.3).

    - Optimizer groups with layer-wise lr decay (`layer_decay_parameter_groups`: ld ** (L + 1 - layer id)) and no
      weight decay for biases, norms and 1-D parameters; the optimizer class and its betas / eps come from
      `TrainingArguments` (official: AdamW, betas (0.9, 0.999), weight decay 0.05). The lr schedule multiplies every
      group's rate, so the decay ratios hold throughout (also under DeepSpeed, with the optimizer made here).
    - Mixup 0.8 / CutMix 1.0 / label smoothing 0.1 with soft-target cross-entropy (`VideoMixup`); set the alphas to
      0 to turn mixing off and `label_smoothing` to 0 for plain cross-entropy.
    - Drop path, dropout and gradient checkpointing come from the model / `TrainingArguments`
      (`--gradient_checkpointing`); bf16 / fp16 through `TrainingArguments` or the DeepSpeed config.
    - Every step draws its randomness (mixup, drop path) from a generator seeded by the step, and checkpoints are
      written atomically (the Stage-1 mixins).
    - Evaluation: `pixel_values` (B, T, C, H, W) is one view per video; (B, V, T, C, H, W) are V views (e.g. 4 clips
      x 3 crops from `MultiViewClipDecoder`) whose per-view softmax is averaged per video, as the official `merge`.
      Predictions handed to `compute_metrics` are these (B, K) probabilities; the eval loss is their negative
      log-likelihood.

    Args:
        layer_decay: 0.75 for B/16, 0.85 for L/16 (None or 1 disables it).
        mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob, label_smoothing: see `VideoMixup`.
        Other arguments are `transformers.Trainer`'s. Batches: {"pixel_values", "labels"} (`VideoCollator`).
    Logged besides `loss`: `mix_lam` (mean mixing coefficient since the last log).
    """

    def __init__(
        self,
        *args,
        layer_decay: float | None = 0.75,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ValueError(f"`layer_decay` must be in (0, 1] or None, got {layer_decay}.")
        self.layer_decay = layer_decay
        num_labels = getattr(self.accelerator.unwrap_model(self.model).config, "num_labels", 0)
        self.mixup = VideoMixup(
            max(num_labels, 1), mixup_alpha, cutmix_alpha, mixup_prob, mixup_switch_prob, label_smoothing
        )
        # The loss below is a per-micro-batch mean: the Trainer divides it by the accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        if not self.label_names:
            self.label_names = ["labels"]
        self._metrics = _MetricAccumulator()

    def create_optimizer(self, model=None):
        """The Trainer's optimizer class and hyper-parameters over `layer_decay_parameter_groups`."""
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = layer_decay_parameter_groups(
                opt_model,
                self.args.learning_rate,
                self.args.weight_decay,
                self.layer_decay,
                num_layers=self.accelerator.unwrap_model(opt_model).config.num_hidden_layers,
            )
            if self.optimizer_cls_and_kwargs is not None:
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The Trainer's schedule; `cosine_with_min_lr` with `{"min_lr": x}` is read as a floor of x for the base rate
        (x * lr_scale per group, the official `min_lr`), which also works on DeepSpeed's optimizer (it has no
        `defaults` for transformers to read the base rate from)."""
        kwargs = self.args.lr_scheduler_kwargs if isinstance(self.args.lr_scheduler_kwargs, dict) else {}
        if self.lr_scheduler is None and self.args.lr_scheduler_type == "cosine_with_min_lr" and "min_lr" in kwargs:
            from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

            rest = {k: v for k, v in kwargs.items() if k != "min_lr"}
            self.lr_scheduler = get_cosine_with_min_lr_schedule_with_warmup(
                self.optimizer if optimizer is None else optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                min_lr_rate=kwargs["min_lr"] / self.args.learning_rate,
                **rest,
            )
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        pixel_values, labels = inputs["pixel_values"], inputs.get("labels")
        if model.training:
            if labels is None:
                raise ValueError("Training batches must hold `labels` (B,) next to `pixel_values`.")
            pixel_values, targets, lam = self.mixup(pixel_values, labels)
            outputs = model(pixel_values=pixel_values)
            loss = soft_target_cross_entropy(outputs.logits, targets)
            self._metrics.add({"mix_lam": lam})
            return (loss, outputs) if return_outputs else loss
        probs = self.predict_probabilities(model, pixel_values)
        loss = None if labels is None else torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels.long())
        return (loss, probs) if return_outputs else loss

    @staticmethod
    def predict_probabilities(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class probabilities per video: (B, T, C, H, W) -> softmax (B, K); (B, V, T, C, H, W) -> the mean over the
        V views of each view's softmax (official multi-view `merge`). float32."""
        if pixel_values.ndim == 5:
            return model(pixel_values=pixel_values).logits.float().softmax(-1)
        if pixel_values.ndim != 6:
            raise ValueError(
                f"`pixel_values` must be (B, T, C, H, W) or (B, V, T, C, H, W), got {tuple(pixel_values.shape)}."
            )
        b, v = pixel_values.shape[:2]
        logits = model(pixel_values=pixel_values.flatten(0, 1)).logits.float()  # (B * V, K), views grouped by video
        return logits.softmax(-1).view(b, v, -1).mean(1)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """(loss, probabilities (B, K), labels (B,)) with multi-view averaging; see the class docstring."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, probs = self.compute_loss(model, inputs, return_outputs=True)
        loss = None if loss is None else loss.detach()
        if prediction_loss_only:
            return loss, None, None
        return loss, probs.detach(), inputs.get("labels")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._metrics.pop())
        super().log(logs, start_time)


def top_k_compute_metrics(k: _Sequence[int] = (1, 5), metrics_dir: str | None = None):
    """A `compute_metrics` for `UMTFineTuningTrainer`: top-k accuracies of the (multi-view) probabilities through the
    `evaluate` module `modeling_umt/metrics/top_k_accuracy.py` (loaded by path, no Hub access).

    Returns:
        fn(EvalPrediction) -> {"top1": ..., "top5": ...} (fractions in [0, 1]; k values above K count as correct).
    """
    import evaluate

    metric = evaluate.load(os.path.join(metrics_dir, "top_k_accuracy") if metrics_dir else metric_path("top_k_accuracy"))

    def compute_metrics(prediction) -> dict[str, float]:
        scores, labels = prediction.predictions, prediction.label_ids
        return metric.compute(predictions=scores, references=labels, k=list(k))

    return compute_metrics


def select_label_subset(model: nn.Module, keep: _Sequence[int | str]) -> nn.Module:
    """Keep some rows of a classifier's head, in the given order (official K710 -> K400 head transfer: the first 400
    rows; K600 / K700 through a label list).

    Args:
        model: a `UMTForVideoClassification` whose head has K rows.
        keep: class ids (int, or digit strings) or class names of `model.config.label2id`; row j of the new head is
            old row keep[j].
    Returns:
        the same model, its `classifier` now (len(keep),) outputs and `config.num_labels` / `id2label` / `label2id`
        matching.
    """
    old = model.classifier
    if not isinstance(old, nn.Linear):
        raise ValueError(f"`model` must have a Linear `classifier`, got {type(old).__name__}.")
    label2id = {str(name): int(i) for name, i in (model.config.label2id or {}).items()}
    rows = []
    for item in keep:
        if isinstance(item, str) and item in label2id:
            rows.append(label2id[item])
        elif isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            rows.append(int(item))
        else:
            raise ValueError(f"`keep` holds {item!r}, which is neither a class id nor a label name of the model.")
    if not rows or min(rows) < 0 or max(rows) >= old.out_features:
        raise ValueError(f"`keep` must name rows in [0, {old.out_features}), got {rows[:10]}...")
    new = type(old)(old.in_features, len(rows), bias=old.bias is not None, device=old.weight.device,
                    dtype=old.weight.dtype)  # fmt: skip
    with torch.no_grad():
        new.weight.copy_(old.weight[rows])
        if old.bias is not None:
            new.bias.copy_(old.bias[rows])
    model.classifier = new
    old_names = model.config.id2label or {}
    names = [old_names.get(r, old_names.get(str(r), f"LABEL_{r}")) for r in rows]
    model.config.num_labels = len(rows)
    model.num_labels = len(rows)
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: i for i, name in enumerate(names)}
    return model


def load_video_classifier(
    name_or_path: str | os.PathLike,
    id2label: dict[int, str] | None = None,
    label_subset: _Sequence[int | str] | None = None,
    **config_overrides,
):
    """A `UMTForVideoClassification` to fine-tune from a saved directory.

    - A classifier checkpoint (`UMTForVideoClassification`, e.g. a converted official fine-tuned model) loads whole;
      with `label_subset` its head keeps those rows (`select_label_subset`); otherwise, if `id2label` has another
      number of classes, a new head is made (the old one is dropped, as the official `--delete_head`).
    - Any other UMT checkpoint (a `run_stage1.py` `UMTForPreTraining`, a `UMTVideoModel`) gives the backbone; the
      final LayerNorm is dropped (`use_final_norm=False`: the official fine-tuning model normalises the pooled vector
      with a new fc_norm instead) and the head is new (truncated normal x `head_init_scale`).

    Args:
        id2label: the classes to fine-tune on; sets `num_labels`.
        config_overrides: config fields to change, e.g. drop_path_rate=0.1, attn_implementation is not one of them.
    """
    from .configuration_umt import UMTConfig
    from .modeling_umt import UMTForVideoClassification

    config = UMTConfig.from_pretrained(name_or_path)
    is_classifier = "UMTForVideoClassification" in (config.architectures or [])
    for key, value in config_overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"`{key}` is not a UMTConfig field.")
        setattr(config, key, value)
    if is_classifier:
        model = UMTForVideoClassification.from_pretrained(name_or_path, config=config)
        if label_subset is not None:
            select_label_subset(model, label_subset)
        elif id2label is not None and len(id2label) != config.num_labels:
            _finetune_logger.warning(
                "The checkpoint's head has %d classes but %d are asked for: starting a new head.",
                config.num_labels, len(id2label),
            )  # fmt: skip
            config.num_labels = len(id2label)
            config.id2label, config.label2id = dict(id2label), {v: k for k, v in id2label.items()}
            model = UMTForVideoClassification.from_pretrained(name_or_path, config=config, ignore_mismatched_sizes=True)
        if id2label is not None:
            if len(id2label) != model.config.num_labels:
                raise ValueError(
                    f"`label_subset` keeps {model.config.num_labels} classes but `id2label` has {len(id2label)}."
                )
            model.config.id2label = dict(id2label)
            model.config.label2id = {v: k for k, v in id2label.items()}
        return model
    if label_subset is not None:
        raise ValueError("`label_subset` needs a classifier checkpoint; this one has no classification head.")
    config.use_final_norm = False
    if id2label is not None:
        config.num_labels = len(id2label)
        config.id2label, config.label2id = dict(id2label), {v: k for k, v in id2label.items()}
    config.architectures = ["UMTForVideoClassification"]
    # The load report would list the expected differences (new head and fc_norm, dropped final norm and Stage-1
    # heads) as problems; check them here instead and report only the unexpected ones.
    verbosity = _hf_logging.get_verbosity()
    _hf_logging.set_verbosity_error()
    try:
        model, info = UMTForVideoClassification.from_pretrained(name_or_path, config=config, output_loading_info=True)
    finally:
        _hf_logging.set_verbosity(verbosity)
    expected_missing = _re.compile(r"^(classifier|umt\.pooler)\.")
    expected_unexpected = _re.compile(r"^(umt\.layernorm|uta_heads|umt\.uta_heads)\.")
    odd = sorted(k for k in info["missing_keys"] if not expected_missing.match(k))
    odd += sorted(k for k in info["unexpected_keys"] if not expected_unexpected.match(k))
    odd += sorted(str(k) for k in info["mismatched_keys"])
    if odd:
        _finetune_logger.warning("Loading %s as a backbone: unexpected differences %s", name_or_path, odd)
    _finetune_logger.info(
        "Backbone from %s; new head (%d classes) and fc_norm, final norm dropped.", name_or_path, config.num_labels
    )
    return model


__all__ += [
    "UMTFineTuningTrainer",
    "VideoMixup",
    "layer_decay_parameter_groups",
    "load_video_classifier",
    "select_label_subset",
    "smooth_one_hot",
    "soft_target_cross_entropy",
    "top_k_compute_metrics",
    "umt_layer_id",
]
