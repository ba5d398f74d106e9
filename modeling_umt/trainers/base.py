"""`UMTTrainer`: what every UMT trainer shares, on top of `transformers.Trainer`.

The Trainer keeps the loop, checkpointing, resumption, logging and DDP / DeepSpeed / accelerate. This base adds:
atomic checkpoints and final models, step-seeded randomness (exact resumption), the logging of every loss term the
model's output carries, and one `prediction_step`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import torch
from huggingface_hub import upload_folder
from torch import nn
from transformers import Trainer, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, rotate_checkpoints
from transformers.utils import logging
from transformers.utils import ModelOutput

from processors.fileio import publish_directory

from ..model_card import update_model_card
from ..publishing import complete_model_folder
from .optim import decay_parameter_names
from .callbacks import ProgressFileCallback

logger = logging.get_logger(__name__)

_TIMING_SUFFIXES = ("_runtime", "_per_second", "total_flos")  # speed, not a property of the model
PER_LAYER_SUFFIX = "_loss_per_layer"  # a (K,) output field `<name>_loss_per_layer` is logged as `<name>_layer_<i>`


class ScalarAccumulator:
    """Running means of scalars between two Trainer log events (the Trainer only averages `loss` itself)."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] += float(v)
            self.counts[k] += 1

    def pop(self) -> dict[str, float]:
        out = {k: round(v / self.counts[k], 6) for k, v in self.sums.items()}
        self.sums.clear()
        self.counts.clear()
        return out


def output_loss_terms(outputs: ModelOutput | Mapping, layer_ids=None) -> dict[str, float]:
    """The loss terms of a model output, as plain floats to log.

    Every scalar field whose name starts with `loss_` (`loss_vtc`, `loss_uta`, ...) keeps its name; every (K,) field
    named `<name>_loss_per_layer` (`uta_loss_per_layer`) gives `<name>_layer_<id>` per entry, with the ids
    `layer_ids` (e.g. `config.uta_layer_indices`) or 0..K-1. The total `loss` is left to the Trainer."""
    terms = {}
    for name, value in outputs.items():
        if not isinstance(value, torch.Tensor):
            continue
        if name.startswith("loss_") and value.numel() == 1:
            terms[name] = value.detach().item()
        elif name.endswith(PER_LAYER_SUFFIX) and value.ndim == 1:
            ids = list(layer_ids) if layer_ids is not None and len(layer_ids) == len(value) else range(len(value))
            prefix = name[: -len(PER_LAYER_SUFFIX)]
            terms.update({f"{prefix}_layer_{i}": v for i, v in zip(ids, value.detach().tolist())})
    return terms


class UMTTrainer(Trainer):
    """Base of the UMT trainers (Stage 1 distillation, Stage 2 vision-language, fine-tuning).

    - Checkpoints appear whole or not at all: each is written under a hidden staging folder of the output directory
      (`.staging-checkpoint-<step>`, the same name on every process), then published with
      `processors.fileio.publish_directory` once every process has finished writing. A run killed while saving
      leaves only the staging folder, which `get_last_checkpoint` never picks up and the next save replaces.
      `save_model_atomic` does the same for the final model; `train_resuming` resumes from the last checkpoint.
    - Every training micro-step draws its randomness (masks, mixup, drop path, dropout) from a generator seeded by
      (seed, step, micro-step, process), and restores the global RNG afterwards: a resumed run repeats exactly the
      steps an uninterrupted run would take, whatever the data loader consumed in between, and each process of a
      distributed run still draws differently.
    - Logging: besides `loss`, every loss term of the model's output (see `output_loss_terms`) and every scalar
      passed to `record`, averaged between two log events.
    - Weight decay follows the official rule (`decay_parameter_names`: none on 1-D parameters); override
      `get_decay_parameter_names` for another.
    - `prediction_step`: the loss, and as predictions whatever `predictions_from` returns (None by default: the
      pre-training stages evaluate their loss only).

    A new task trainer (video QA, action detection) is a small subclass: implement `model_outputs(model, inputs)`
    (run the model on the batch, return its output with `.loss` and any `loss_*` terms: they are logged with no
    further code), call `self.record({...})` for extra scalars, and override `predictions_from(outputs)` to hand
    predictions (e.g. answer logits or boxes) to `compute_metrics`. Collaborators (a teacher, a tokenizer, a
    matcher) are injected as constructor keywords, as in `UMTVisionLanguageTrainer`.
    """

    _staging_run_dir: str | None = None
    _final_model_dir: str | None = None  # the folder save_model_atomic published last (pushed by push_to_hub)
    _micro_step = 0
    _micro_step_of = -1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scalars = ScalarAccumulator()
        self.add_callback(ProgressFileCallback())  # <output_dir>/progress.json: step, seconds per step, ETA

    # ---- the loss --------------------------------------------------------------------------------------------------
    def model_outputs(self, model: nn.Module, inputs: dict) -> ModelOutput:
        """Run `model` on one batch and return its output (with `.loss`). Subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} must implement `model_outputs(model, inputs)`.")

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        outputs = self.model_outputs(model, inputs)
        if model.training:
            config = getattr(self.accelerator.unwrap_model(model), "config", None)
            self.record(output_loss_terms(outputs, getattr(config, "uta_layer_indices", None)))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def record(self, scalars: Mapping[str, float]) -> None:
        """Add scalars to the running means logged with the next training `loss`."""
        self._scalars.add(scalars)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log event: attach the running means since the previous one
            logs.update(self._scalars.pop())
        super().log(logs, start_time)

    # ---- evaluation ------------------------------------------------------------------------------------------------
    def predictions_from(self, outputs) -> torch.Tensor | None:
        """What `prediction_step` hands to `compute_metrics` from `compute_loss`'s outputs (None: loss only)."""
        return None

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """(loss, `predictions_from(outputs)`, labels) of one evaluation batch, without gradients."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        loss = None if loss is None else loss.detach()
        if prediction_loss_only:
            return loss, None, None
        predictions = self.predictions_from(outputs)
        labels = inputs.get(self.label_names[0]) if len(self.label_names) == 1 else None
        return loss, None if predictions is None else predictions.detach(), labels

    # ---- optimisation ----------------------------------------------------------------------------------------------
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return decay_parameter_names(model)

    # ---- step-seeded randomness ------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        step = self.state.global_step
        self._micro_step = self._micro_step + 1 if self._micro_step_of == step else 0
        self._micro_step_of = step
        seed = hash((self.args.seed, step, self._micro_step, self.args.process_index)) % (2**63)
        devices = [self.args.device] if self.args.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return super().training_step(model, inputs, num_items_in_batch)

    # ---- atomic checkpoints ----------------------------------------------------------------------------------------
    def _get_output_dir(self, trial):
        if self._staging_run_dir is not None:
            return self._staging_run_dir
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, f".staging-{name}")  # one name for every process (not a per-pid path)
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
            publish_directory(os.path.join(staging, name), os.path.join(run_dir, name))
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()

    def train_resuming(self, final_dir: str | None = None) -> bool:
        """`train()` from `args.resume_from_checkpoint`, else from the last complete checkpoint in `args.output_dir`
        (so rerunning an interrupted command resumes it), then log and save the train metrics and state.

        A run whose checkpoint already reached its end (`max_steps`, or every epoch of `num_train_epochs`) is
        finished: it is not trained again (the Trainer would take one more step past `max_steps`) and nothing is
        written. When its final model (`final_dir`) is missing, because a kill interrupted the final save, the model
        gets that checkpoint's weights so that the caller can still save it. A run that saves no checkpoints
        (`--save_strategy no`) is finished when `final_dir` exists and the `trainer_state.json` beside it reached
        the end. `--overwrite_output_dir` (an `overwrite_output_dir` argument) trains from scratch instead, after
        deleting the old checkpoints. Returns True when it trained, False when the run had already finished.
        """
        checkpoint = self.args.resume_from_checkpoint
        if getattr(self.args, "overwrite_output_dir", False):
            self._delete_checkpoints()
        elif checkpoint is None and os.path.isdir(self.args.output_dir):
            checkpoint = get_last_checkpoint(self.args.output_dir)
            state_file = os.path.join(self.args.output_dir, TRAINER_STATE_NAME)
            if checkpoint is None and final_dir is not None and os.path.isdir(final_dir) and os.path.isfile(state_file):
                if self.is_finished(self.args.output_dir):
                    logger.warning("%s already holds the end of this run (step %d) and its model %s; not training "
                                   "again. Pass --overwrite_output_dir to train it anew.", self.args.output_dir,
                                   _checkpoint_state(self.args.output_dir).global_step, final_dir)
                    return False
        if checkpoint is not None and self.is_finished(checkpoint):
            logger.warning(
                "%s already reached the end of this run (step %d); not training again. Raise --max_steps to "
                "train further, or use another --output_dir.", checkpoint, _checkpoint_state(checkpoint).global_step,
            )
            if final_dir is not None and os.path.isdir(final_dir):
                return False
            if self.is_deepspeed_enabled:  # the engine that reads a ZeRO checkpoint only exists inside train()
                raise RuntimeError(
                    f"{checkpoint} is the end of a finished DeepSpeed run but its final model was not published; "
                    "run zero_to_fp32.py on that checkpoint to recover the weights."
                )
            self._load_from_checkpoint(checkpoint)
            self.state = _checkpoint_state(checkpoint)  # the finished run's state (its steps go in the model card)
            return False
        result = self.train(resume_from_checkpoint=checkpoint)
        self.log_metrics("train", result.metrics)
        self.save_metrics("train", result.metrics)
        self.save_state()
        return True

    def _delete_checkpoints(self) -> None:
        """Remove the checkpoints of an earlier run in `output_dir` (main process), so that a fresh run neither
        resumes from nor rotates against them."""
        if self.args.should_save and os.path.isdir(self.args.output_dir):
            for name in os.listdir(self.args.output_dir):
                if name.startswith((f"{PREFIX_CHECKPOINT_DIR}-", f".staging-{PREFIX_CHECKPOINT_DIR}-")):
                    shutil.rmtree(os.path.join(self.args.output_dir, name), ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def is_finished(self, checkpoint: str) -> bool:
        """Whether `checkpoint` is the end of the run these arguments describe."""
        state = _checkpoint_state(checkpoint)
        if self.args.max_steps > 0:
            return state.global_step >= self.args.max_steps
        return state.num_train_epochs == self.args.num_train_epochs and state.global_step >= state.max_steps > 0

    def save_model_atomic(
        self,
        output_dir: str,
        save_extras: Callable[[str], None] | None = None,
        card_arguments: Sequence = (),
        max_text_length: int | None = None,
    ) -> None:
        """`save_model` into a hidden sibling folder, then publish it as `output_dir` (replacing an older one).

        The folder gets, before it is published (the model is never visible without them):
        - the processor that fits the model (`modeling_umt.publishing.fitting_processor`): `processing_class` when it
          is a processor (a new task passes its own), a `UMTProcessor` for a video-text model given its tokenizer
          (`max_text_length`: its caption length), else the `UMTVideoProcessor` sized from the model's config;
        - a model card, README.md (`modeling_umt.model_card`): the recipe (TrainingArguments and
          `card_arguments`, the script's other argument dataclasses), the steps taken and the metrics measured so
          far (`all_results.json` of `args.output_dir`); later `save_metrics` calls add theirs to it;
        - whatever `save_extras(folder)` (main process only) adds.
        With `args.push_to_hub`, the published folder is then pushed (`push_to_hub`).
        """
        output_dir = os.path.abspath(output_dir)
        tmp = os.path.join(os.path.dirname(output_dir), f".tmp-{os.path.basename(output_dir)}")  # same on every rank
        if self.args.should_save and os.path.isdir(tmp):
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self.save_model(tmp, _internal_call=True)  # internal: the Trainer's own push (of output_dir) stays out
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            complete_model_folder(
                tmp, self.accelerator.unwrap_model(self.model), self.processing_class, max_text_length,
                training_arguments=self.args, script_arguments=card_arguments, steps=self.state.global_step,
                metrics=self._measured_metrics(),
            )  # fmt: skip
            if save_extras is not None:
                save_extras(tmp)
            publish_directory(tmp, output_dir)
        self._final_model_dir = output_dir
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:
            self.push_to_hub()

    def _measured_metrics(self) -> dict[str, float]:
        """The metrics saved so far in `args.output_dir/all_results.json`, without timings (not model properties)."""
        path = os.path.join(self.args.output_dir, "all_results.json")
        if not os.path.isfile(path):
            return {}
        with open(path) as f:
            metrics = json.load(f)
        return {k: v for k, v in metrics.items() if not k.endswith(_TIMING_SUFFIXES)}

    def save_metrics(self, split, metrics, combined=True):
        """`Trainer.save_metrics`, then the same metrics (timings left out) added to the final model's card when
        `save_model_atomic` has published it already (an evaluation after the final save)."""
        super().save_metrics(split, metrics, combined)
        if self.args.should_save and self._final_model_dir is not None and os.path.isdir(self._final_model_dir):
            update_model_card(self._final_model_dir,
                              {k: v for k, v in metrics.items() if not k.endswith(_TIMING_SUFFIXES)})  # fmt: skip

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, token=None,
                    revision=None, private=None, **kwargs):  # fmt: skip
        """Upload the final model folder that `save_model_atomic` published (weights, code, processor, card) to the
        Hub repo `args.hub_model_id` (default: the name of `args.output_dir`), as its root.

        `Trainer.push_to_hub` would upload `args.output_dir` itself, where the UMT scripts keep checkpoints and
        runs; the final model lives in its own folder (`<output_dir>/model`). `kwargs` are not used (the card is
        our own README.md)."""
        if self._final_model_dir is None:
            raise ValueError(
                "push_to_hub uploads the final model folder; call save_model_atomic(<folder>) first (the UMT "
                "scripts do, with --push_to_hub)"
            )
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        if not self.is_world_process_zero():
            return None
        self._finish_current_push()
        return upload_folder(
            repo_id=self.hub_model_id, folder_path=self._final_model_dir, commit_message=commit_message, token=token,
            run_as_future=not blocking, revision=revision if revision is not None else self.args.hub_revision,
        )  # fmt: skip


def _checkpoint_state(checkpoint: str) -> TrainerState:
    return TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))


__all__ = ["ScalarAccumulator", "UMTTrainer", "output_loss_terms"]
