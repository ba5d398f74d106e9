"""`umt_cpu_bf16`: softmax attention for bf16 tensors on the CPU, as query-chunked bf16 matrix products.

On CPUs with bf16 matrix units, torch's fused CPU attention kernel for bf16 runs well below the machine's bf16 GEMM
speed, while plain bf16 `matmul`s run at it. This kernel computes attention as two batched GEMMs per chunk of
queries, `P = softmax(q k^T * scale)` and `P v`: the scores of one chunk are a (B, heads, chunk, N_k) bf16 block
(`block_elements` score entries at most, 4 Mi = 8 MiB by default), so the full N x N map is never held. The softmax
computes in float32 internally (torch's CPU softmax kernel upcasts bf16); the scores and probabilities are stored
in bf16, the products accumulate in float32 inside the GEMMs.

Training: a custom autograd function saves only q, k and v (no N x N probabilities, no output) and recomputes each
chunk's probabilities in backward (flash-attention style: 5 GEMMs per chunk, float32 accumulators for dK and dV).

Precision (tests/test_attention.py, `pytest -s` prints it; random unit-normal q, k, v in float32, head dim 64,
N = 64..600, measured 2026-12-02): max |output - float32 SDPA| = 6.6e-3..1.25e-2 (torch's bf16 SDPA: 2.9e-3..7.1e-3
on the same inputs); gradients within 1.8e-2 of float32 SDPA's, relative to their largest entry (bf16 SDPA: 1.0e-2).
The tolerance, held by the tests: 1.5e-2 on the output, 2.5e-2 on the gradients. The extra error against bf16 SDPA
is the bf16 rounding of the scores (|logit| x 2^-9 at most), which SDPA keeps in float32.

Selecting it: `attn_implementation="umt_cpu_bf16"` (registered in transformers' `AttentionInterface` when
`modeling_umt` is imported) for the student, `UMTTeacher(..., attn_implementation="umt_cpu_bf16")` for the CLIP
teacher. Where it cannot apply (not bf16, not on the CPU, an attention mask, attention dropout, causal attention,
grouped key/value heads) it falls back to SDPA for that call, so selecting it is always safe.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

CPU_BF16_ATTENTION = "umt_cpu_bf16"
DEFAULT_BLOCK_ELEMENTS = 1 << 22  # score entries per chunk, all heads together: 8 MiB of bf16


def query_chunk_size(batch_heads: int, q_len: int, k_len: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Queries per chunk so that a chunk's scores (batch_heads, chunk, k_len) hold at most `block_elements` entries
    (at least 16 queries, at most all of them), rounded down to a multiple of 16 when it is a real chunk."""
    if block_elements < 1:
        raise ValueError(f"block_elements must be >= 1, got {block_elements}")
    rows = block_elements // max(1, batch_heads * k_len)
    if rows >= q_len:
        return q_len
    return max(16, rows - rows % 16)


def _scores(q_chunk: torch.Tensor, k_t: torch.Tensor) -> torch.Tensor:
    """softmax over keys of q_chunk @ k_t (q already scaled): bf16 scores, float32 softmax arithmetic, bf16 out."""
    return torch.matmul(q_chunk, k_t).softmax(dim=-1)


class _ChunkedAttention(torch.autograd.Function):
    """q, k, v (B, H, N, d) bf16 -> out (B, N_q, H, d); backward recomputes the probabilities chunk by chunk."""

    @staticmethod
    def forward(ctx, q, k, v, scale: float, chunk: int):
        with torch.autocast("cpu", enabled=False):
            q_scaled = (q * scale).contiguous()
            k_t = k.contiguous().transpose(-1, -2)
            v = v.contiguous()
            b, h, n, d = q.shape
            out = q.new_empty(b, n, h, v.shape[-1])
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                out[:, start:stop] = torch.matmul(_scores(q_scaled[:, :, start:stop], k_t), v).transpose(1, 2)
        ctx.save_for_backward(q, k, v)
        ctx.scale, ctx.chunk = scale, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v = ctx.saved_tensors
        scale, chunk = ctx.scale, ctx.chunk
        with torch.autocast("cpu", enabled=False):
            grad_out = grad_out.to(q.dtype).transpose(1, 2)  # (B, H, N_q, d)
            q_scaled = (q * scale).contiguous()
            k, v = k.contiguous(), v.contiguous()
            k_t, v_t = k.transpose(-1, -2), v.transpose(-1, -2)
            grad_q = torch.empty_like(q_scaled)
            grad_k = torch.zeros(k.shape, dtype=torch.float32)
            grad_v = torch.zeros(v.shape, dtype=torch.float32)
            for start in range(0, q.shape[2], chunk):
                stop = min(q.shape[2], start + chunk)
                g = grad_out[:, :, start:stop]
                probs = _scores(q_scaled[:, :, start:stop], k_t)  # (B, H, c, N_k)
                grad_v += torch.matmul(probs.transpose(-1, -2), g)
                grad_scores = torch._softmax_backward_data(torch.matmul(g, v_t), probs, -1, probs.dtype)
                grad_q[:, :, start:stop] = torch.matmul(grad_scores, k)
                grad_k += torch.matmul(grad_scores.transpose(-1, -2), q_scaled[:, :, start:stop])
            grad_q.mul_(scale)
        return grad_q, grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


def chunked_bf16_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> torch.Tensor:  # fmt: skip
    """softmax(q k^T * scale) v for q (B, H, N_q, d), k (B, H, N_k, d), v (B, H, N_k, d_v), all bf16 on the CPU,
    without a mask. Returns (B, N_q, H, d_v) (the layout transformers' attention functions return). `scale` defaults
    to d ** -0.5."""
    if query.dtype != torch.bfloat16 or key.dtype != torch.bfloat16 or value.dtype != torch.bfloat16:
        raise ValueError(f"query, key, value must be bfloat16; got {query.dtype}, {key.dtype}, {value.dtype}")
    if query.device.type != "cpu":
        raise ValueError(f"query must be on the CPU; got device {query.device}")
    if query.ndim != 4 or key.shape[:2] != query.shape[:2] or value.shape[:3] != key.shape[:3]:
        raise ValueError(
            f"query (B, H, N_q, d), key (B, H, N_k, d), value (B, H, N_k, d_v) expected; got {tuple(query.shape)}, "
            f"{tuple(key.shape)}, {tuple(value.shape)}"
        )
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    b, h, n_q, _ = query.shape
    chunk = query_chunk_size(b * h, n_q, key.shape[2], block_elements)
    return _ChunkedAttention.apply(query, key, value, scale, chunk)


def cpu_bf16_applies(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether `chunked_bf16_attention` takes these tensors (else callers fall back to SDPA)."""
    return (
        query.device.type == "cpu"
        and query.dtype == key.dtype == value.dtype == torch.bfloat16
        and query.ndim == 4
        and key.shape[:2] == query.shape[:2]
        and value.shape[:3] == key.shape[:3]
    )


def cpu_bf16_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The `AttentionInterface` entry of "umt_cpu_bf16": `chunked_bf16_attention` where it applies, SDPA otherwise
    (an attention mask, dropout, causal attention, other dtypes or devices). Returns ((B, N, H, d), None)."""
    if attention_mask is None and not dropout and not is_causal and cpu_bf16_applies(query, key, value):
        return chunked_bf16_attention(query, key, value, scaling), None
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
    )


AttentionInterface.register(CPU_BF16_ATTENTION, cpu_bf16_attention_forward)

__all__ = [
    "CPU_BF16_ATTENTION",
    "DEFAULT_BLOCK_ELEMENTS",
    "chunked_bf16_attention",
    "cpu_bf16_applies",
    "cpu_bf16_attention_forward",
    "query_chunk_size",
]
