"""Zero-shot video classification with a UMT video-text model (`UMTForVideoTextRetrieval`).

Class names become prompts ("a video of {}."), the text tower embeds them, the video tower embeds the clip, and the
scores are the softmax over classes of the video-text similarity divided by the model's temperature -- the recipe of
transformers' zero-shot-image-classification pipeline with CLIP, on UMT's frame-averaged cosine. Two ways in, one
implementation (`label_embeddings`, `zero_shot_logits`):

    import modeling_umt                                    # registers the pipeline task
    from transformers import pipeline

    classify = pipeline("zero-shot-video-classification", model="outputs/stage2/model")
    classify("clip.mp4", candidate_labels=["moving left", "moving right", "growing"])
    # [{"label": "moving left", "score": 0.71}, {"label": "growing", "score": 0.2}, ...]

or `UMTZeroShotVideoClassifier(model, tokenizer, video_processor)` on a model in memory.

Several templates (a list) are averaged per class after L2-normalisation, then re-normalised (CLIP's prompt
ensembling). Only the contrastive (ITC) score is used; the ITM re-ranking of retrieval is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import Pipeline

__all__ = [
    "UMTZeroShotVideoClassificationPipeline",
    "UMTZeroShotVideoClassifier",
    "label_embeddings",
    "prompts_for",
    "zero_shot_logits",
]

DEFAULT_TEMPLATE = "a video of {}."


def prompts_for(candidate_labels: Sequence[str], hypothesis_template: str | Sequence[str]) -> tuple[list[str], int]:
    """(prompts, number of templates): every label in every template, label-major (label 0's templates first)."""
    templates = [hypothesis_template] if isinstance(hypothesis_template, str) else list(hypothesis_template)
    if not templates or any(not isinstance(t, str) or "{}" not in t for t in templates):
        raise ValueError(f"`hypothesis_template` must contain '{{}}' (each of them), got {hypothesis_template!r}.")
    labels = [candidate_labels] if isinstance(candidate_labels, str) else list(candidate_labels)
    if not labels:
        raise ValueError("`candidate_labels` must name at least one class.")
    return [t.format(label) for label in labels for t in templates], len(templates)


def label_embeddings(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_templates: int) -> torch.Tensor:
    """(K * num_templates, L) tokenised prompts, label-major -> (K, E) unit label embeddings: each prompt's text
    embedding (`get_text_features(...).pooler_output`), averaged over a label's templates and re-normalised."""
    embeds = model.get_text_features(input_ids, attention_mask).pooler_output
    return F.normalize(embeds.view(-1, num_templates, embeds.shape[-1]).mean(1), dim=-1)


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
        prompts_for(["x"], templates)  # validates the templates
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
        if key not in self._cache:
            prompts, num_templates = prompts_for(key, self.templates)
            text = self.tokenizer(
                prompts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            self._cache[key] = label_embeddings(self.model, text["input_ids"], text["attention_mask"], num_templates)
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


class UMTZeroShotVideoClassificationPipeline(Pipeline):
    """The `zero-shot-video-classification` pipeline task on a `UMTForVideoTextRetrieval` and its `UMTProcessor`:

        pipeline("zero-shot-video-classification", model=stage2_dir)(video, candidate_labels=[...])

    video: a path, URL, bytes or decoded frames (what `UMTVideoProcessor` takes; a file is decoded at the model's
    `num_frames` frames, "middle" sampling), or a list of them (a list of results). candidate_labels: class names.
    hypothesis_template: a format string with one `{}`, or a list of them (ensembled); default "a video of {}.".
    top_k: keep the best k. num_frames: frames to sample instead of the processor's. Returns, per video, a list of
    {"label", "score"} sorted by score; scores are the softmax over the labels of cosine / temperature
    (`zero_shot_logits`, as `UMTZeroShotVideoClassifier`). Registered by `import modeling_umt`.
    """

    _load_processor = None  # try: a folder without a UMTProcessor then gets our error below, not a tokenizer's
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self.processor, "tokenizer", None) is None or getattr(self.processor, "video_processor", None) is None:
            raise ValueError(
                "zero-shot-video-classification needs a UMTProcessor (video processor + tokenizer); got "
                f"{type(self.processor).__name__}. Save one with the model (the UMT scripts and the converter's "
                "--tokenizer do) or pass `processor=`."
            )

    def __call__(self, videos, candidate_labels: Sequence[str] | None = None, **kwargs):
        if candidate_labels is None:
            raise ValueError("zero-shot-video-classification needs `candidate_labels` (the class names); got None")
        return super().__call__(videos, candidate_labels=candidate_labels, **kwargs)

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, top_k=None, num_frames=None):
        preprocess = {"candidate_labels": candidate_labels} if candidate_labels is not None else {}
        if hypothesis_template is not None:
            preprocess["hypothesis_template"] = hypothesis_template
        if num_frames is not None:
            preprocess["num_frames"] = num_frames
        return preprocess, {}, ({"top_k": top_k} if top_k is not None else {})

    def preprocess(self, video, candidate_labels=(), hypothesis_template=DEFAULT_TEMPLATE, num_frames=None):
        prompts, num_templates = prompts_for(candidate_labels, hypothesis_template)
        frames = {} if num_frames is None else {"num_frames": num_frames, "do_sample_frames": True}
        pixel_values = self.processor.video_processor(video, return_tensors="pt", **frames)["pixel_values"]
        text = self.processor(text=prompts, return_tensors="pt")
        return {"pixel_values": pixel_values.to(self.dtype), "input_ids": text["input_ids"],
                "attention_mask": text["attention_mask"], "num_templates": num_templates,
                "candidate_labels": list(candidate_labels)}  # fmt: skip

    def _forward(self, inputs):
        labels = label_embeddings(self.model, inputs["input_ids"], inputs["attention_mask"], inputs["num_templates"])
        video = self.model.get_video_features(inputs["pixel_values"]).pooler_output
        logits = zero_shot_logits(video, labels, self.model.temp.detach().float())
        return {"logits": logits, "candidate_labels": inputs["candidate_labels"]}

    def postprocess(self, outputs, top_k=None):
        labels = outputs["candidate_labels"]
        probs = outputs["logits"][0].float().softmax(-1)
        scores, order = probs.topk(len(labels) if top_k is None else min(top_k, len(labels)))
        return [{"label": labels[i], "score": s} for s, i in zip(scores.tolist(), order.tolist())]
