"""The exported module: a CAM classifier's logits and its upsampled, normalised class maps in one ``forward``.

Normalisation per map: min-max by default, or any rule of :data:`wsol.metrics.NORMALIZATIONS` (max, PaS, IVR:
Kim et al., ICCV 2021, arXiv 2107.13221) in its ONNX form, with a small epsilon in the divisor so flat maps stay
finite. PaS and IVR read the map's value at a fixed sorted index, found with one ``TopK`` whose K is a constant set
by the map size (exact like the library's selection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIDECAR_VERSION = 1
DEFAULT_EPS = 1e-5  # >= 1e-5 so the normalisation survives a TensorRT FP16 engine (min normal ~6e-5)


def normalize_flat_maps(
    flat: torch.Tensor, normalization: str = "minmax", percentile: float = 0.6, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """The export's per-map normalisation of ``(..., HW)`` maps, ONNX-exportable, with ``eps`` in each divisor.

    The ONNX form of the rule of :data:`wsol.metrics.NORMALIZATIONS` named ``normalization``: the rules of
    :func:`wsol.metrics.normalize_scoremaps` with ``+ eps`` in each divisor instead of the zero-map special
    cases (a constant map gives 0; so does ``max`` on a map with no positive value).

    Raises:
        ValueError: for an unknown rule or a percentile outside [0, 1).
    """
    from wsol.metrics.normalization import get_normalization

    return get_normalization(normalization, percentile).onnx(flat, percentile, eps)


def describe_normalization(normalization: str, percentile: float, size: int, eps: float = DEFAULT_EPS) -> str:
    """The sidecar's formula of :func:`normalize_flat_maps` for maps of ``size`` pixels."""
    from wsol.metrics.normalization import get_normalization

    return get_normalization(normalization, percentile).onnx_formula(percentile, size, eps)


def parse_cam_classes(spec: str) -> tuple[str, int | None]:
    """Parse ``top1``, ``all`` or ``topk:K`` into ``(mode, k)`` (``k`` is None for ``all``).

    Raises:
        ValueError: for anything else, or K < 1.
    """
    spec = spec.strip().lower()
    if spec == "top1":
        return "top1", 1
    if spec == "all":
        return "all", None
    if spec.startswith("topk:"):
        try:
            k = int(spec[len("topk:") :])
        except ValueError:
            k = 0
        if k >= 1:
            return ("top1", 1) if k == 1 else ("topk", k)
    raise ValueError(f"cam classes must be 'top1', 'all' or 'topk:K' with K >= 1, got {spec!r}")


class ExportWrapper(nn.Module):
    """``images -> (logits, cams)`` around any module with ``forward_with_cams``; used only for export.

    The map and image sizes are probed once at construction and used as Python constants, so both
    exporters emit constant Reshape/Resize shapes and a fully static ``cams`` shape apart from the batch.

    Args:
        model: a module whose ``forward_with_cams(images)`` returns ``(logits (N, K), maps (N, K, h, w))``
            (every :class:`~wsol.methods.WSOLModule`); it is put in eval mode.
        cam_classes: ``top1``, ``topk:K`` or ``all``.
        image_size: ``(H, W)`` of the exported input.
        eps: added to the divisor of the per-map normalisation so flat maps stay finite.
        normalization: a rule of :data:`wsol.metrics.NORMALIZATIONS`, ``minmax`` by default (see
            :func:`normalize_flat_maps`).
        percentile: IVR's percentile in [0, 1).
        dynamic_size: read every size from the input at run time instead (``cams`` then follow the input's
            height and width); ``image_size`` is only the probe and trace size. Rules that read a sorted index
            fixed by the map size (PaS, IVR) do not allow it.

    Raises:
        ValueError: if the model lacks ``forward_with_cams`` or its maps and logits disagree on K, or for a
            bad normalisation or percentile.
    """

    def __init__(
        self,
        model: nn.Module,
        cam_classes: str = "top1",
        image_size: tuple[int, int] = (224, 224),
        eps: float = DEFAULT_EPS,
        normalization: str = "minmax",
        percentile: float = 0.6,
        dynamic_size: bool = False,
    ) -> None:
        from wsol.metrics.normalization import get_normalization, normalization_rules

        super().__init__()
        rule = get_normalization(normalization, percentile)
        if dynamic_size and rule.sorted_index:
            size_free = " or ".join(r.name for r in normalization_rules() if not r.sorted_index)
            raise ValueError(
                f"a dynamic input size needs a normalisation without a fixed sorted index ({size_free}), "
                f"got {normalization!r}"
            )
        self.dynamic_size = bool(dynamic_size)
        if not hasattr(model, "forward_with_cams"):
            raise ValueError("the model must define forward_with_cams(images) -> (logits, maps)")
        self.normalization, self.percentile = normalization, float(percentile)
        self.model = model.eval()
        self.mode, k = parse_cam_classes(cam_classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.eps = float(eps)
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            logits, maps = model.forward_with_cams(torch.zeros(1, 3, *self.image_size, device=self.device))
        if maps.ndim != 4 or maps.shape[1] != logits.shape[1]:
            raise ValueError(
                f"forward_with_cams returned logits {tuple(logits.shape)} and maps {tuple(maps.shape)}; "
                "the export needs one map per logit"
            )
        self.num_classes, self.map_size = int(maps.shape[1]), (int(maps.shape[2]), int(maps.shape[3]))
        self.num_cams = self.num_classes if k is None else min(k, self.num_classes)
        self.eval()

    def train(self, mode: bool = True) -> ExportWrapper:
        """Stay in eval mode: the legacy exporter restores the wrapper's mode after tracing, which would
        otherwise flip BatchNorm and dropout of the wrapped model back to training."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dynamic_size:
            return self._forward_dynamic(images)
        logits, maps = self.model.forward_with_cams(images)
        (h, w), n = self.map_size, self.num_cams
        # Python-int sizes: both exporters emit constant Reshape/Resize shapes.
        selected = self._select(logits, maps.reshape(-1, self.num_classes, h * w)).reshape(-1, n, h, w)
        up = F.interpolate(selected, size=self.image_size, mode="bilinear", align_corners=False)
        flat = up.reshape(-1, n, self.image_size[0] * self.image_size[1])
        cams = normalize_flat_maps(flat, self.normalization, self.percentile, self.eps)
        return logits, cams.reshape(-1, n, *self.image_size)

    def _forward_dynamic(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with every size read from the tensors, so the traced graph keeps them symbolic."""
        logits, maps = self.model.forward_with_cams(images)
        selected = self._select(logits, maps.flatten(2))
        selected = selected.reshape(maps.shape[0], selected.shape[1], maps.shape[2], maps.shape[3])
        up = F.interpolate(selected, size=images.shape[-2:], mode="bilinear", align_corners=False)
        cams = normalize_flat_maps(up.flatten(2), self.normalization, self.percentile, self.eps)
        return logits, cams.reshape(up.shape)

    def _select(self, logits: torch.Tensor, flat_maps: torch.Tensor) -> torch.Tensor:
        """The exported classes' maps ``(N, n, h * w)`` of flattened maps ``(N, K, h * w)``."""
        if self.mode == "all":
            return flat_maps
        n = self.num_cams
        idx = logits.argmax(dim=1, keepdim=True) if n == 1 else logits.topk(n, dim=1).indices
        # A one-hot MatMul selects the maps without Gather/Expand over dynamic shapes, which
        # TensorRT handles less gracefully than a batched MatMul.
        classes = torch.arange(self.num_classes, device=flat_maps.device)
        onehot = (idx.unsqueeze(2) == classes).to(flat_maps.dtype)
        return torch.matmul(onehot, flat_maps)
