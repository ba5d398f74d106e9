"""What a published model folder carries beside its weights: the processor that fits the model, and its model card.

One seam for every writer: `UMTTrainer.save_model_atomic` (every training script, and any new one that passes its
`processing_class`) and the converter call `complete_model_folder` on the staging folder before publishing it.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

from processors.processing_umt import UMTProcessor
from processors.video_processing_umt import UMTVideoProcessor
from processors.video_processing_umt_detection import UMTDetectionVideoProcessor

from .model_card import write_model_card

logger = logging.get_logger(__name__)

__all__ = ["PROCESSOR_FILES", "complete_model_folder", "fitting_processor"]

PROCESSOR_FILES = ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json")


def fitting_processor(config, processing_class=None, max_text_length: int | None = None):
    """The processor a folder of a model with `config` should carry.

    - `processing_class` a processor (anything but a bare tokenizer: a `UMTProcessor`, a `UMTVideoProcessor`, a QA
      or detection processor): itself, the caller's choice.
    - A video-text config (one with a `vision_config`) and a tokenizer: `UMTProcessor.from_model_config`.
    - A video-text config without a tokenizer: the fitting `UMTVideoProcessor` only (logged: give the tokenizer for
      a `UMTProcessor`).
    - An action-detection config (`UMTDetectionConfig`): `UMTDetectionVideoProcessor` with the model's frames,
      short side 256 and padding to the patch size (the official AVA test processing).
    - A video config (`UMTConfig`: classifier, Stage-1 student): `UMTVideoProcessor.from_model_config`.
    """
    if processing_class is not None and not isinstance(processing_class, PreTrainedTokenizerBase):
        return processing_class
    if getattr(config, "vision_config", None) is not None:
        if processing_class is None:
            logger.warning(
                "No tokenizer given for this video-text model: its folder gets the video processor only; pass the "
                "BERT tokenizer it was trained with to get a UMTProcessor (text and video)."
            )
            return UMTVideoProcessor.from_model_config(config)
        extra = {} if max_text_length is None else {"max_text_length": max_text_length}
        return UMTProcessor.from_model_config(config, processing_class, **extra)
    if processing_class is not None:
        raise ValueError(
            f"`processing_class` is a tokenizer ({type(processing_class).__name__}) but the model "
            f"({type(config).__name__}) takes no text; pass a video processor or None"
        )
    if getattr(config, "model_type", None) == "umt_detection":
        return UMTDetectionVideoProcessor(num_frames=config.num_frames, pad_multiple=config.patch_hw[0])
    return UMTVideoProcessor.from_model_config(config)


def complete_model_folder(
    folder: str | os.PathLike, model, processing_class=None, max_text_length: int | None = None, **card
) -> Path:
    """Save into `folder` (which already holds `model`'s weights) the processor that fits it (`fitting_processor`)
    and its model card (`modeling_umt.model_card.write_model_card`, `card` its keywords). Returns `folder`."""
    config = model.config
    fitting_processor(config, processing_class, max_text_length).save_pretrained(folder)
    write_model_card(folder, model, **card)
    return Path(folder)
