"""Loaded weights that compute exactly like the weights they were saved from.

`from_pretrained` hands back parameters whose memory comes from the safetensors reader, at whatever address that
allocation leaves them: measured here at 8 or 28 bytes past a 64-byte boundary, so not even 16-byte aligned.
Freshly built models get 64-byte aligned memory from torch's allocator. On CPUs where MKL runs its SSE/AVX sgemm
kernels (reproduced on any x86 CPU with `MKL_ENABLE_INSTRUCTIONS=SSE4_2` or `=AVX`), the summation order of a
GEMM depends on the operands' alignment, so the same weights at another alignment give logits 1-2 ULP apart
(1.5e-11 on a tiny classifier): a save / `from_pretrained` round trip is then not bit-exact. Which alignment a
load ends up with depends on the allocator's state, so it changed with the transformers release (5.23 -> 5.24)
on such a machine without any value changing.

`AlignedLoadingMixin` re-homes every CPU tensor the loader left unaligned in torch-allocated (64-byte aligned)
memory, once, right after loading: a reloaded model is then bit-identical to the saved one on every CPU.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AlignedLoadingMixin", "ALIGNMENT", "realign_storage"]

# torch's CPU allocator aligns to 64 bytes (one cache line, the widest SIMD register)
ALIGNMENT = 64


def _needs_copy(tensor: torch.Tensor | None) -> bool:
    return (
        tensor is not None
        and tensor.device.type == "cpu"
        and tensor.numel() > 0
        and tensor.data_ptr() % ALIGNMENT != 0
    )


@torch.no_grad()
def realign_storage(module: nn.Module) -> int:
    """Copy every CPU parameter and buffer of `module` whose memory is not `ALIGNMENT`-byte aligned into fresh,
    aligned memory (values, dtype, strides' contiguity and `requires_grad` unchanged; tied parameters stay tied,
    since the Parameter object itself is kept). Returns how many tensors were moved."""
    moved = 0
    for param in module.parameters():  # each Parameter once, tied ones included once
        if _needs_copy(param):
            param.data = param.data.clone(memory_format=torch.contiguous_format)
            moved += 1
    for submodule in module.modules():
        for name, buffer in submodule._buffers.items():
            if _needs_copy(buffer):
                submodule._buffers[name] = buffer.clone(memory_format=torch.contiguous_format)
                moved += 1
    return moved


class AlignedLoadingMixin:
    """For `PreTrainedModel` subclasses: `from_pretrained` returns a model whose CPU tensors are aligned (see the
    module docstring for why)."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True gives a tuple
        realign_storage(model)
        return loaded
