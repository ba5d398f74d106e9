"""Zero-shot video classification with a UMT video-text model (`UMTForVideoTextRetrieval`).

Class names become prompts ("a video of {}."), the text tower embeds them, the video tower embeds the clip, and the
scores are the softmax over classes of the video-text similarity divided by the model's temperature -- the recipe of
transformers' zero-shot-image-classification pipeline with CLIP, on UMT's frame-averaged cosine:

    from transformers import AutoModel, BertTokenizer
    from modeling_umt.zero_shot import UMTZeroShotVideoClassifier
    from processors.video_processing_umt import UMTVideoProcessor

    model = AutoModel.from_pretrained("outputs/stage2/model")          # a UMTForVideoTextRetrieval
    classifier = UMTZeroShotVideoClassifier(model, BertTokenizer.from_pretrained("outputs/stage2/model"),
                                            UMTVideoProcessor(size={"shortest_edge": 224}, num_frames=4))
    classifier("clip.mp4", candidate_labels=["moving left", "moving right", "growing"])
    # [{"label": "moving left", "score": 0.71}, {"label": "growing", "score": 0.2}, ...]

Several templates (a list) are averaged per class after L2-normalisation, then re-normalised (CLIP's prompt
ensembling). Only the contrastive (ITC) score is used; the ITM re-ranking of retrieval is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["UMTZeroShotVideoClassifier", "zero_shot_logits"]


def zero_shot_logits(video_embeds: torch.Tensor, label_embeds: torch.Tensor, temperature: float | torch.Tensor = 1.0):
    """(B, E) video embeddings (`get_video_features(...).pooler_output`, frame-averaged unit projections) and (K, E)
    unit label embeddings -> (B, K) logits = frame-averaged cosine / temperature."""
    if video_embeds.ndim != 2 or label_embeds.ndim != 2 or video_embeds.shape[1] != label_embeds.shape[1]:
        raise ValueError(
            f"`video_embeds` (B, E) and `label_embeds` (K, E) must share E; got {tuple(video_embeds.shape)} and "
            f"{tuple(label_embeds.shape)}."
        )
    return video_embeds.float() @ label_embeds.float().T / temperature


class UMTZeroShotVideoClassifier:
    """Classify videos into free-text classes with a `UMTForVideoTextRetrieval` and its BERT tokenizer.

    Args:
        model: the video-text model (put in eval mode here).
        tokenizer: its tokenizer (BERT's).
        video_processor: a `UMTVideoProcessor` for paths / bytes / frames; None to pass `pixel_values` tensors only.
        hypothesis_template: a format string with one `{}` for the class name, or a list of them (ensembled).
        max_length: token length of a prompt (the official `max_txt_l` is 32).
        use_temperature: divide by the model's learned temperature (default; sharper scores) or not (plain cosine).

    Call: videos (one or a list of whatever the processor takes, or `pixel_values` (B, T, C, H, W)) and
    `candidate_labels` -> for one video a list of {"label", "score"} sorted by score, for several a list of such
    lists. `top_k` keeps the best k.
    """

    def __init__(
        self,
        model,
        tokenizer,
        video_processor=None,
        hypothesis_template: str | Sequence[str] = "a video of {}.",
        max_length: int = 32,
        use_temperature: bool = True,
    ):
        templates = [hypothesis_template] if isinstance(hypothesis_template, str) else list(hypothesis_template)
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"`hypothesis_template` must contain '{{}}' (each of them), got {hypothesis_template!r}.")
        self.model, self.tokenizer, self.video_processor = model.eval(), tokenizer, video_processor
        self.templates, self.max_length, self.use_temperature = templates, max_length, use_temperature
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_labels(self, candidate_labels: Sequence[str]) -> torch.Tensor:
        """(K, E) unit text embeddings of the classes, prompts averaged over templates (cached per label list)."""
        key = tuple(candidate_labels)
        if not key:
            raise ValueError("`candidate_labels` must name at least one class.")
        if key not in self._cache:
            prompts = [t.format(label) for label in key for t in self.templates]
            text = self.tokenizer(
                prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            embeds = self.model.get_text_features(text["input_ids"], text["attention_mask"]).pooler_output
            embeds = F.normalize(embeds.view(len(key), len(self.templates), -1).mean(1), dim=-1)
            self._cache[key] = embeds
        return self._cache[key]

    @torch.no_grad()
    def logits(self, pixel_values: torch.Tensor, candidate_labels: Sequence[str]) -> torch.Tensor:
        """pixel_values (B, T, C, H, W) -> (B, K) zero-shot logits (softmax them for probabilities)."""
        video = self.model.get_video_features(pixel_values.to(self.device)).pooler_output
        temperature = self.model.temp.detach().float() if self.use_temperature else 1.0
        return zero_shot_logits(video, self.encode_labels(candidate_labels), temperature)

    def __call__(self, videos, candidate_labels: Sequence[str], top_k: int | None = None):
        single = not isinstance(videos, (list, tuple)) and not (isinstance(videos, torch.Tensor) and videos.ndim == 5)
        if isinstance(videos, torch.Tensor) and videos.ndim in (4, 5):
            pixel_values = videos if videos.ndim == 5 else videos[None]
        else:
            if self.video_processor is None:
                raise ValueError("`videos` must be pixel_values (B, T, C, H, W) when no `video_processor` is given.")
            frames = getattr(self.video_processor, "num_frames", None)
            kwargs = {"do_sample_frames": True, "num_frames": frames} if frames else {}
            pixel_values = self.video_processor(videos, return_tensors="pt", **kwargs)["pixel_values"]
        probs = self.logits(pixel_values, candidate_labels).softmax(-1)
        k = len(candidate_labels) if top_k is None else min(top_k, len(candidate_labels))
        results = []
        for row in probs:
            scores, order = row.topk(k)
            results.append([{"label": candidate_labels[i], "score": s} for s, i in zip(scores.tolist(), order.tolist())])
        return results[0] if single else results
