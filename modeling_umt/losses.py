"""UMT losses, one function per equation of the paper.

`uta_loss` is Unmasked Token Alignment (Stage 1 and Stage 2); `vtc_loss`, `vtm_loss` and `mlm_loss` are the Stage-2
video-text contrastive, matching and masked-language-modelling losses (official_umt.md §5.3). The fine-tuning loss
(soft-target cross-entropy, official §4.3) lives with its trainer in `trainers/finetuning.py`: this file travels with
every saved model as remote code, which must not need timm.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def uta_loss(student: torch.Tensor, teacher: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Unmasked Token Alignment: mean(2 - 2 cos(student, teacher)) over layers, batch and visible tokens.

    student, teacher: (K, B, N_vis, D) features of the same visible tokens (the teacher's gathered with the mask).
    Both sides are L2-normalised here (idempotent for the Stage-1 heads, which already normalise), which makes
    2 - 2 cos the squared distance of unit vectors, as the official `clip_loss_type='l2'`.
    reduction: "mean" -> scalar; "per_layer" -> (K,) mean per aligned layer (their mean is the scalar loss).
    """
    if student.shape != teacher.shape or student.ndim != 4:
        raise ValueError(
            f"`student` and `teacher` must both be (K, B, N_vis, D); got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}."
        )
    cos = (F.normalize(student.float(), dim=-1) * F.normalize(teacher.float(), dim=-1)).sum(-1)  # (K, B, N_vis)
    per_token = 2.0 - 2.0 * cos
    if reduction == "per_layer":
        return per_token.flatten(1).mean(1)
    if reduction == "mean":
        return per_token.mean()
    raise ValueError(f"`reduction` must be 'mean' or 'per_layer', got {reduction!r}.")


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: video-text contrastive (VTC), video-text matching (VTM), masked language modelling (MLM)
# ----------------------------------------------------------------------------------------------------------------
class _AllGatherLocalGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward returns only this rank's slice of the incoming gradient, without
    summing it across ranks (the official `AllGather`, ALBEF style). (B, ...) -> (world * B, ...)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.batch = rank, tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.batch * ctx.rank : ctx.batch * (ctx.rank + 1)]


def gather_with_local_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (B, ...) from every process along dim 0 (rank order), keeping the gradient path to the
    local slice only; identity when torch.distributed is not initialised or has one process. Every rank must pass
    the same B."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _AllGatherLocalGrad.apply(tensor)


def video_text_similarity(
    video_embeds: torch.Tensor, text_embeds: torch.Tensor, temperature: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Cosine similarity / temperature, video rows x text columns: (B_v, B_t).

    video_embeds: (B_v, T, E) per-frame projections (the cosine is averaged over T, official `get_sim`) or (B_v, E).
    text_embeds: (B_t, E). Both are L2-normalised here.
    """
    if video_embeds.ndim == 2:
        video_embeds = video_embeds[:, None]
    if video_embeds.ndim != 3 or text_embeds.ndim != 2 or video_embeds.shape[-1] != text_embeds.shape[-1]:
        raise ValueError(
            f"`video_embeds` must be (B, [T,] E) and `text_embeds` (B, E) with the same E; got "
            f"{tuple(video_embeds.shape)} and {tuple(text_embeds.shape)}."
        )
    v = F.normalize(video_embeds, dim=-1)
    t = F.normalize(text_embeds, dim=-1)
    return torch.einsum("vfe,te->vft", v, t).mean(1) / temperature


def _positive_mask(num: int, ids: torch.Tensor | None, device, dtype=torch.bool) -> torch.Tensor:
    """(num, num): True where two items share an id (the diagonal when ids is None)."""
    if ids is None:
        return torch.eye(num, device=device, dtype=dtype)
    ids = ids.view(-1, 1).to(device)
    return torch.eq(ids, ids.T).to(dtype)


def vtc_loss(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    temperature: torch.Tensor | float,
    ids: torch.Tensor | None = None,
    gather: bool = True,
) -> torch.Tensor:
    """Video-Text Contrastive loss: symmetric cross-entropy of the similarity matrix against multi-positive targets.

    video_embeds: (B, T, E) or (B, E) projected video features (normalised here; per-frame cosines averaged over T).
    text_embeds: (B, E) projected text [CLS] features.
    temperature: scalar dividing the similarities (the learnable `temp`, already clamped).
    ids: (B,) int, items with equal ids are positives of each other (several captions of one video); None = each
        video matches only its own text.
    gather: all-gather features (and ids) from every process first, so each sees the global batch; the gradient
        flows back to the local slice only (official AllGather). No-op on one process.
    Returns the scalar (CE_v2t + CE_t2v) / 2, with soft targets eq(ids) / row sums.
    """
    if video_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"`video_embeds` and `text_embeds` must pair up: batch sizes {video_embeds.shape[0]} and "
            f"{text_embeds.shape[0]}."
        )
    if gather:
        video_embeds = gather_with_local_grad(video_embeds)
        text_embeds = gather_with_local_grad(text_embeds)
        if ids is not None:
            ids = gather_with_local_grad(ids.to(video_embeds.device))
    sim_v2t = video_text_similarity(video_embeds.float(), text_embeds.float(), temperature)
    with torch.no_grad():
        targets = _positive_mask(sim_v2t.shape[0], ids, sim_v2t.device, sim_v2t.dtype)
        targets = targets / targets.sum(1, keepdim=True)
    loss_v2t = -(F.log_softmax(sim_v2t, dim=1) * targets).sum(1).mean()
    loss_t2v = -(F.log_softmax(sim_v2t.T, dim=1) * targets).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


@torch.no_grad()
def vtm_negatives(
    sim_v2t: torch.Tensor, ids: torch.Tensor | None = None, hard: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one negative per item for VTM from the local similarity matrix.

    sim_v2t: (B, B) similarities / temperature (videos x texts). ids: (B,) or None (see `vtc_loss`).
    hard=True (official `vtm_hard_neg`): sample from softmax(sim + 1e-4) with positives zeroed; else uniformly among
    the non-positives. The global RNG is used, videos first then texts, as the official code (so seeded runs match).
    Returns (video_negatives (B,), text_negatives (B,)): for text i the index of a negative video, for video i the
    index of a negative text.
    """
    b = sim_v2t.shape[0]
    positive = _positive_mask(b, ids, sim_v2t.device)
    if hard:
        weights_v2t = F.softmax(sim_v2t.float() + 1e-4, dim=1).masked_fill(positive, 0)
        weights_t2v = F.softmax(sim_v2t.T.float() + 1e-4, dim=1).masked_fill(positive, 0)
        weights_v2t = torch.nan_to_num(weights_v2t, nan=1e-2, posinf=1e-2, neginf=1e-2)
        weights_t2v = torch.nan_to_num(weights_t2v, nan=1e-2, posinf=1e-2, neginf=1e-2)
        if not bool((weights_t2v.sum(1) > 0).all()):
            raise ValueError("Every item of the batch shares its id with all others: VTM has no negative to draw.")
        video_neg = torch.multinomial(weights_t2v, 1).view(b)
        text_neg = torch.multinomial(weights_v2t, 1).view(b)
        return video_neg, text_neg
    noise = torch.randn(b, b, device=sim_v2t.device) - 10000.0 * positive.float()
    video_neg = noise.argmax(1)
    noise = torch.randn(b, b, device=sim_v2t.device) - 10000.0 * positive.float()
    return video_neg, noise.argmax(1)


def vtm_loss(itm_logits: torch.Tensor) -> torch.Tensor:
    """Video-Text Matching loss: binary cross-entropy of the ITM head over positives and hard negatives.

    itm_logits: (3B, 2) ITM-head logits for [B matched pairs; B (negative video, text); B (video, negative text)]
    in that order (official layout). Class 1 = match. Returns the scalar mean cross-entropy.
    """
    if itm_logits.ndim != 2 or itm_logits.shape[1] != 2 or itm_logits.shape[0] % 3:
        raise ValueError(f"`itm_logits` must be (3B, 2), got {tuple(itm_logits.shape)}.")
    b = itm_logits.shape[0] // 3
    labels = torch.zeros(3 * b, dtype=torch.long, device=itm_logits.device)
    labels[:b] = 1
    return F.cross_entropy(itm_logits.float(), labels)


@torch.no_grad()
def mask_tokens_for_mlm(
    input_ids: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    probability: float = 0.5,
    pad_token_id: int | None = 0,
    cls_token_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """UMT's MLM corruption (official `MLMLoss.mask`): each token is chosen with `probability` (0.5, not BERT's
    0.15), never [PAD] or [CLS] ([SEP] can be); of the chosen, 80% become [MASK], half of the rest (10%) a random id
    in [0, vocab_size), the rest stay. RNG calls follow the official order on CPU, so seeded runs match it.

    input_ids: (B, L) int. Returns (corrupted ids (B, L), labels (B, L) = original id where chosen, else -100).
    """
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"`mask_token_id` ({mask_token_id}) must be a token id of the vocabulary [0, {vocab_size}); "
                         "set `config.mask_token_id` to the tokenizer's `mask_token_id`.")
    ids, labels = input_ids.clone(), input_ids.clone()
    chosen = torch.bernoulli(torch.full(ids.shape, float(probability))).bool().to(ids.device)
    for special in (pad_token_id, cls_token_id):
        if special is not None:
            chosen &= ids != special
    labels[~chosen] = -100
    replaced = torch.bernoulli(torch.full(ids.shape, 0.8)).bool().to(ids.device) & chosen
    ids[replaced] = mask_token_id
    randomised = torch.bernoulli(torch.full(ids.shape, 0.5)).bool().to(ids.device) & chosen & ~replaced
    random_words = torch.randint(vocab_size, ids.shape, dtype=torch.long).to(ids.device)
    ids[randomised] = random_words[randomised]
    return ids, labels


def mlm_loss(prediction_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked Language Modelling loss: cross-entropy of the vocabulary logits at the masked positions.

    prediction_logits: (B, L, V) or (M, V) (already restricted to the masked positions); labels: (B, L) or (M,) with
    -100 at positions that do not count. Returns the scalar mean over counted positions (0 when there are none,
    where the official code would give NaN).
    """
    logits = prediction_logits.reshape(-1, prediction_logits.shape[-1]).float()
    labels = labels.reshape(-1)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"`prediction_logits` {tuple(prediction_logits.shape)} and `labels` {tuple(labels.shape)} do not align."
        )
    if not bool((labels != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=-100)


def action_detection_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The official AVA loss: binary cross-entropy with logits, averaged over boxes and classes, times the number of
    boxes (`engine_for_finetuning.train_class_batch`): a sum over boxes of the mean over classes.

    logits, labels: (K, num_labels), labels multi-hot (or soft) in [0, 1]. Returns a float32 scalar (0 for K = 0).
    """
    if logits.shape != labels.shape:
        raise ValueError(f"`labels` must have the shape of `logits` {tuple(logits.shape)}, got {tuple(labels.shape)}.")
    if logits.shape[0] == 0:
        return logits.float().sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits.float(), labels.to(logits.device, torch.float32))
    return loss * logits.shape[0]


# ----------------------------------------------------------------------------------------------------------------
# Video question answering (official umt_qa.py with xbert's BertLMHeadModel, reduction="none")
# ----------------------------------------------------------------------------------------------------------------
def answer_sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each answer's next-token cross-entropy, summed over its tokens: logits (A, La, V) at positions 0..La-2 predict
    labels (A, La) at 1..La-1; -100 labels (padding) count 0. Returns (A,), the negative log-likelihood of each
    answer after its first token ([CLS])."""
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"`logits` must be (A, La, V) and `labels` (A, La); got {tuple(logits.shape)} and {tuple(labels.shape)}."
        )
    shifted = logits[:, :-1].float()
    per_token = F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), labels[:, 1:].reshape(-1), reduction="none")
    return per_token.view(labels.shape[0], -1).sum(1)


def weighted_answer_loss(answer_losses: torch.Tensor, weights: torch.Tensor, num_questions: int) -> torch.Tensor:
    """The QA training loss: Σ_answers weight · summed CE / number of questions (official `loss.sum() / B`; weights are
    each answer's frequency among its question's annotations, so they sum to 1 per question)."""
    if weights.shape != answer_losses.shape:
        raise ValueError(
            f"`weights` must have one entry per answer {tuple(answer_losses.shape)}, got {tuple(weights.shape)}."
        )
    return (weights.to(answer_losses.dtype) * answer_losses).sum() / num_questions


__all__ = [
    "action_detection_loss",
    "answer_sequence_loss",
    "gather_with_local_grad",
    "mask_tokens_for_mlm",
    "mlm_loss",
    "uta_loss",
    "video_text_similarity",
    "vtc_loss",
    "vtm_loss",
    "vtm_negatives",
    "weighted_answer_loss",
]
