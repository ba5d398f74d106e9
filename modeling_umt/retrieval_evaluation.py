"""Video-text retrieval evaluation for `UMTForVideoTextRetrieval` (official `tasks/retrieval_utils.py`).

1. Text features of every caption (batches), video features of every video (no mask, per-frame pooling).
2. ITC: the frame-averaged cosine of every (video, text) pair (temperature 1): the official `*_emb` numbers.
3. ITM: for each video its top-k texts by ITC, and for each text its top-k videos, are re-scored by the ITM head's match
   logit (k = 128); everything else scores -100: the official headline numbers.
4. Recall@1/5/10 both ways and their mean, through the `evaluate` metric `modeling_umt/metrics/retrieval.py` (a caption's rank is
   its video's; a video's rank is that of its best-ranked caption).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import evaluate
import torch

from .metrics import metric_path
from .modeling_umt_retrieval import UMTForVideoTextRetrieval, UMTRetrievalScores

METRIC_PATH = metric_path("retrieval")


@torch.no_grad()
def extract_features(
    model: UMTForVideoTextRetrieval,
    video_batches: Iterable[torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    text_batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Features of a test set. video_batches: iterable of pixel_values (B, T, C, H, W) covering the videos in order;
    input_ids / attention_mask: (T_text, L) all captions. Returns video_hidden (V, N, Dv), video_embeds (V, E),
    text_hidden (T, L, H), text_embeds (T, E), attention_mask (T, L)."""
    device = next(model.parameters()).device
    video_hidden, video_embeds = [], []
    for pixel_values in video_batches:
        out = model.get_video_features(pixel_values.to(device))
        video_hidden.append(out.last_hidden_state)
        video_embeds.append(out.pooler_output)
    text_hidden, text_embeds = [], []
    for s in range(0, len(input_ids), text_batch_size):
        out = model.get_text_features(
            input_ids[s : s + text_batch_size].to(device), attention_mask[s : s + text_batch_size].to(device)
        )
        text_hidden.append(out.last_hidden_state)
        text_embeds.append(out.pooler_output)
    return dict(
        video_hidden=torch.cat(video_hidden),
        video_embeds=torch.cat(video_embeds),
        text_hidden=torch.cat(text_hidden),
        text_embeds=torch.cat(text_embeds),
        attention_mask=attention_mask.to(device),
    )


def recall_metrics(
    scores_v2t: torch.Tensor, scores_t2v: torch.Tensor, txt2video: Sequence[int], video2txt: Sequence[Sequence[int]],
    metric=None,
) -> dict[str, float]:
    """R@1/5/10 and means both ways. scores_v2t (V, T), scores_t2v (T, V). metric: a loaded `metrics/retrieval.py`
    evaluate module (loaded here when None). Keys: v2t_r1.. v2t_r_mean, t2v_r1.. t2v_r_mean, r_mean (mean of the 6)."""
    if metric is None:
        metric = evaluate.load(METRIC_PATH)
    v2t = metric.compute(predictions=scores_v2t.float().cpu().tolist(), references=[list(t) for t in video2txt])
    t2v = metric.compute(predictions=scores_t2v.float().cpu().tolist(), references=[[int(v)] for v in txt2video])
    out = {f"v2t_{k}": v for k, v in v2t.items() if k != "num_queries"}
    out.update({f"t2v_{k}": v for k, v in t2v.items() if k != "num_queries"})
    out["r_mean"] = (out["v2t_r_mean"] + out["t2v_r_mean"]) / 2
    return out


@torch.no_grad()
def evaluate_retrieval(
    model: UMTForVideoTextRetrieval,
    video_batches: Iterable[torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    txt2video: Sequence[int],
    video2txt: Sequence[Sequence[int]],
    k: int | None = None,
    itm_batch_size: int = 32,
    metric=None,
) -> tuple[dict[str, dict[str, float]], UMTRetrievalScores]:
    """Full evaluation: returns ({"itc": recalls, "itc+itm": recalls}, the score matrices).

    The model is put in eval mode. See `extract_features` for the inputs; txt2video (T,) and video2txt (V lists)
    give the ground truth; k defaults to `model.config.itm_rerank_k` (128).
    """
    model.eval()
    feats = extract_features(model, video_batches, input_ids, attention_mask)
    if feats["video_embeds"].shape[0] != len(video2txt) or feats["text_embeds"].shape[0] != len(txt2video):
        raise ValueError(
            f"{feats['video_embeds'].shape[0]} videos and {feats['text_embeds'].shape[0]} texts were encoded but "
            f"`video2txt` has {len(video2txt)} and `txt2video` {len(txt2video)} entries."
        )
    scores = model.retrieval_scores(
        feats["video_hidden"], feats["video_embeds"], feats["text_hidden"], feats["text_embeds"],
        feats["attention_mask"], k=k, batch_size=itm_batch_size,
    )
    results = {
        "itc": recall_metrics(scores.itc_v2t, scores.itc_v2t.T, txt2video, video2txt, metric),
        "itc+itm": recall_metrics(scores.itm_v2t, scores.itm_t2v, txt2video, video2txt, metric),
    }
    return results, scores


__all__ = ["METRIC_PATH", "evaluate_retrieval", "extract_features", "recall_metrics"]
