"""Weight helpers for backbone builders: a local checkpoint loaded safely, and a hub download with one clear error.

Builders of the package use them, and a backbone of the user's own may too::

    from wsol.models.weights import hub_download, load_weights

    with hub_download("mynet"):            # no network: one ConnectionError naming the backbone
        model = fetch_pretrained_mynet()
    load_weights(model, "mynet.pth")        # torch.load(weights_only=True), keys checked
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

__all__ = ["hub_download", "load_weights"]


@contextmanager
def hub_download(name: str) -> Iterator[None]:
    """Turn a failed weight download (no network, hub down) inside the block into one ``ConnectionError`` naming
    ``name``; any other error passes through."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        text = str(err).lower()
        if not isinstance(err, (URLError, ConnectionError, TimeoutError)) and not (
            "download" in text or "connection" in text
        ):
            raise
        raise ConnectionError(
            f"could not download pretrained weights for {name!r} ({err}); without network access, pass "
            "weights_path= with a local checkpoint (the torch/timm hub caches are read when populated)"
        ) from err


def load_weights(model: nn.Module, weights_path: str | Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a local state dict (or a checkpoint with a ``state_dict`` entry) into ``model``, never unpickling.

    Keys under ``ignore_prefixes`` (e.g. a classifier the feature model lacks) may be missing or extra; any other
    missing, unexpected or misshapen key is an error.

    Raises:
        FileNotFoundError: ``weights_path`` does not exist.
        ValueError: the weights do not fit ``model`` (the message names the file and the first keys).
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"weights in {path} do not fit the backbone: {err}") from err
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefixes)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(ignore_prefixes)]
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not fit the backbone: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
