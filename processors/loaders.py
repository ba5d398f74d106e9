"""Data loaders that combine other loaders: `MediaInterleavedLoader` (the official MetaLoader)."""

from __future__ import annotations

import torch


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


__all__ = ["MediaInterleavedLoader"]
