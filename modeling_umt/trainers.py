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
        outputs = model(pixel_values=pixel_values, bool_masked_pos=mask, teacher_features=target.hidden_states)
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


__all__ = ["UMTDistillationTrainer", "decay_parameter_names", "scale_learning_rate"]


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
            mask, targets = self.make_mask(target.cls_attention), target.hidden_states
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
