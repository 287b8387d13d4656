"""Batching of transformed samples with a variable number of boxes per image."""

from __future__ import annotations

from typing import Any

import torch


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors of equal shape; keep boxes and ids as per-image lists.

    ``label`` and ``mask`` are stacked only when every item has one (single-label data, data with
    masks), so a batch never mixes present and absent annotations silently.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {
        "image": torch.stack([it["image"] for it in items]),
        "target": torch.stack([it["target"] for it in items]),
        "boxes": [it["boxes"] for it in items],
        "image_id": [it["image_id"] for it in items],
        "orig_size": torch.stack([it["orig_size"] for it in items]),
    }
    for key in ("label", "mask"):
        if all(key in it for it in items):
            batch[key] = torch.stack([it[key] for it in items])
    return batch
