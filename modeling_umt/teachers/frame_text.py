"""A small CLIP-style image-text teacher, trained on single video frames and their captions.

UMT's Stage 1 needs a frozen image model that knows *what* is in a frame (the paper uses CLIP). Where no CLIP
weights can be had (the machines this project is tested on reach no model hub), the main job trains one:

- image side: a transformers `CLIPVisionModelWithProjection` (class token, learned positions, pre-LN blocks, the
  projected class token as the image embedding), trained from scratch;
- text side: a frozen sentence encoder (all-MiniLM-L6-v2 by default: BERT, mean-pooled over the tokens, L2-normalised)
  and a trained linear projection into the image embedding space;
- loss: CLIP's image-to-text contrastive loss, with every distinct caption of the training set as the candidates
  (a frame's own caption is the positive; the dataset has a few hundred captions, so each step sees all of them and
  no caption appears twice among the negatives).

The captions describe appearance only (colour, texture, shape: "a red striped square"): one frame cannot show how
things move, which is what the video student has to learn on its own.

The trained image tower is saved as a plain `CLIPVisionModelWithProjection` folder, so it is a teacher like any other
(`build_teacher("hf:<folder>")`, `--teacher hf:<folder>`); `text_head.safetensors` and `captions.json` beside it keep
the text side for zero-shot checks (`FrameTextTeacher.from_pretrained`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection
from transformers.utils import ModelOutput

__all__ = [
    "FrameTextTeacher",
    "FrameTextTeacherOutput",
    "appearance_caption",
    "encode_sentences",
    "TEXT_HEAD_FILE",
    "CAPTIONS_FILE",
]

TEXT_HEAD_FILE = "text_head.safetensors"
CAPTIONS_FILE = "captions.json"


def appearance_caption(caption: str, label_name: str | None = None) -> str:
    """The appearance part of a caption: `caption` without its trailing action (`label_name`), e.g.
    ("a red striped square moving left", "moving left") -> "a red striped square". A caption that does not end with
    the action is returned as it is (it already says only what a frame shows)."""
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"caption must be a non-empty string, got {caption!r}")
    caption = caption.strip()
    if label_name and caption.endswith(" " + label_name):
        return caption[: -len(label_name) - 1].strip()
    return caption


@torch.no_grad()
def encode_sentences(texts: Sequence[str], text_model: str, batch_size: int = 64, max_length: int = 32) -> torch.Tensor:
    """Sentence embeddings of `texts` with the BERT at `text_model` (a folder or hub id): the mean of the last
    hidden states over the real tokens, L2-normalised (how all-MiniLM-L6-v2 is meant to be used). (N, D) float32."""
    if not texts:
        raise ValueError("texts is empty: nothing to encode")
    tokenizer = AutoTokenizer.from_pretrained(text_model)
    model = AutoModel.from_pretrained(text_model).eval()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1))
    return torch.cat(out).float()


@dataclass
class FrameTextTeacherOutput(ModelOutput):
    """loss: image-to-text cross-entropy over the captions (when `caption_index` is given); logits: (N, C) scaled
    cosine similarities of each frame to every caption; image_embeds: (N, P) unit image embeddings."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None


class FrameTextTeacher(nn.Module):
    """Image tower + frozen caption embeddings + trained text projection (see the module docstring).

    Args:
        vision_config: the image tower's `CLIPVisionConfig` (its `projection_dim` is the shared embedding size).
        caption_features: (C, D_text) frozen sentence embeddings of the C candidate captions.
        captions: the C captions, in the same order (kept for zero-shot predictions).
        text_model: where the sentence embeddings came from (recorded in captions.json).
    """

    def __init__(self, vision_config: CLIPVisionConfig, caption_features: torch.Tensor, captions: Sequence[str],
                 text_model: str = ""):
        super().__init__()
        if caption_features.ndim != 2 or caption_features.shape[0] != len(captions):
            raise ValueError(f"caption_features must be (C, D) with C = len(captions) = {len(captions)}, got "
                             f"{tuple(caption_features.shape)}")
        self.vision = CLIPVisionModelWithProjection(vision_config)
        self.text_projection = nn.Linear(caption_features.shape[1], vision_config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        self.register_buffer("caption_features", caption_features.float().clone())
        self.captions, self.text_model = list(captions), text_model

    def text_embeds(self) -> torch.Tensor:
        """(C, P) unit embeddings of the captions."""
        return F.normalize(self.text_projection(self.caption_features), dim=-1)

    def forward(self, pixel_values: torch.Tensor, caption_index: torch.Tensor | None = None) -> FrameTextTeacherOutput:
        """pixel_values (N, 3, H, W) frames, or (N, 1, 3, H, W) one-frame clips; caption_index (N,) int64."""
        if pixel_values.ndim == 5:
            if pixel_values.shape[1] != 1:
                raise ValueError(f"the teacher trains on single frames: pixel_values (N, 1, 3, H, W) or (N, 3, H, W), "
                                 f"got {tuple(pixel_values.shape)}")
            pixel_values = pixel_values[:, 0]
        image = F.normalize(self.vision(pixel_values=pixel_values).image_embeds, dim=-1)
        logits = self.logit_scale.exp().clamp(max=100) * image @ self.text_embeds().t()
        loss = None
        if caption_index is not None:
            loss = F.cross_entropy(logits.float(), caption_index.to(logits.device))
        return FrameTextTeacherOutput(loss=loss, logits=logits, image_embeds=image)

    # ---- saving ----------------------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write the image tower (a `CLIPVisionModelWithProjection` folder: `--teacher hf:<folder>` loads it) and,
        beside it, the text head and the captions. Write into a staging folder and publish it; this does not."""
        os.makedirs(folder, exist_ok=True)
        self.vision.save_pretrained(folder)
        save_file({"text_projection.weight": self.text_projection.weight.detach().contiguous(),
                   "logit_scale": self.logit_scale.detach().reshape(1),
                   "caption_features": self.caption_features.contiguous()}, os.path.join(folder, TEXT_HEAD_FILE))
        with open(os.path.join(folder, CAPTIONS_FILE), "w") as f:
            json.dump({"captions": self.captions, "text_model": self.text_model}, f, indent=1)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "FrameTextTeacher":
        """Load what `save_pretrained` wrote (the tower and its text head)."""
        head_path, captions_path = os.path.join(folder, TEXT_HEAD_FILE), os.path.join(folder, CAPTIONS_FILE)
        for path in (head_path, captions_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} is missing: {folder} is not a frame-text teacher folder written by "
                                        "FrameTextTeacher.save_pretrained (a bare CLIP tower has no text side)")
        head = load_file(head_path)
        with open(captions_path) as f:
            meta = json.load(f)
        vision = CLIPVisionModelWithProjection.from_pretrained(folder)
        model = cls(vision.config, head["caption_features"], meta["captions"], meta.get("text_model", ""))
        model.vision = vision
        with torch.no_grad():
            model.text_projection.weight.copy_(head["text_projection.weight"])
            model.logit_scale.copy_(head["logit_scale"][0])
        return model.eval()
