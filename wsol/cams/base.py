"""The post-hoc CAM machinery: the method base class, the hook context manager and the registry.

A method turns the activations ``A`` of one target layer (and, for gradient methods, the gradients of
the class score with respect to ``A``) into channel weights; the map is ``sum_k w_k * A_k``, with a
ReLU for the methods whose paper has one. A new method is a subclass overriding :meth:`CAMMethod.weights`.

Everything stays in torch on the model's device: maps come back batched, at the target layer's
resolution, detached by default or differentiable with ``differentiable=True`` (for training losses).
No hook outlives a call: :class:`ActivationHook` registers it on entry and removes it on exit, also when
the forward raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsol.cams._resolve import default_target_layer, resolve_classifier, resolve_layer
from wsol.registry import Registry

Targets = Tensor | Sequence[int] | int | Literal["all"] | None


class CAMResult(NamedTuple):
    """What a CAM method returns.

    Attributes:
        maps: ``(B, h, w)`` raw maps for one target per image, ``(B, T, h, w)`` for ``T`` targets per
            image (``targets="all"`` or a 2-D target tensor).
        logits: ``(B, K)`` model outputs of the (unmasked) forward pass.
    """

    maps: Tensor
    logits: Tensor


@dataclass
class CAMInputs:
    """What :meth:`CAMMethod.weights` sees for one target per image.

    Attributes:
        activations: ``(B, C, h, w)`` output of the target layer.
        gradients: ``(B, C, h, w)`` gradient of the target scores (pre-softmax) with respect to
            ``activations``, or ``None`` for gradient-free methods.
        targets: ``(B,)`` class index per image.
        logits: ``(B, K)`` model outputs.
        images: ``(B, 3, H, W)`` the input batch.
    """

    activations: Tensor
    gradients: Tensor | None
    targets: Tensor
    logits: Tensor
    images: Tensor


class ActivationHook:
    """Context manager holding a forward hook that records a layer's output.

    The hook returns a clone of the output, so in-place operations after the layer (``out += identity``
    in a residual block) cannot change the recorded activations. With ``grad_from_here`` the forward
    runs under ``no_grad`` and the hook switches autograd on at the layer, making the recorded output a
    leaf: the backbone below the layer records no graph, and a gradient method only back-propagates
    through the layers above it (the reason gradient methods here cost about one forward pass).
    The caller's ``no_grad``/``enable_grad`` block restores the grad mode on exit.

    Args:
        layer: the module whose output is recorded (the last call's, for a module used twice).
        grad_from_here: start autograd at this layer (see above).
        require_grad: make the recorded output require grad even when nothing upstream does (frozen
            model), so its gradient can be taken.
    """

    def __init__(self, layer: nn.Module, grad_from_here: bool = False, require_grad: bool = False) -> None:
        self.layer = layer
        self.grad_from_here = grad_from_here
        self.require_grad = require_grad
        self.activations: Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> ActivationHook:
        self._handle = self.layer.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(f"the target layer must output a (B, C, h, w) tensor, got {shape}")
        if self.grad_from_here:
            torch.set_grad_enabled(True)
            output = output.detach().requires_grad_(True)
        elif self.require_grad and not output.requires_grad:
            output = output.requires_grad_(True)  # a leaf: nothing upstream requires grad
        self.activations = output
        return output.clone()


class CAMMethod:
    """Base class of post-hoc CAM methods.

    Args:
        model: any classifier ``images -> logits``: a :class:`wsol.methods.WSOLModule`, a
            plain module with a ``backbone``, or a torchvision/timm classifier. Its train/eval mode
            is left as it is (use ``model.eval()`` for inference maps: batch-norm in train mode couples
            the images of a batch).
        target_layer: the layer whose activations are weighted: a module, a dotted name
            (``"layer4"``), or ``None`` for the backbone's last feature map (``model.backbone`` when
            there is one, else the last module producing a spatial map).
        classifier: for ``cam`` only: the linear classifier after global average pooling (module or
            ``(K, C)`` weights); found automatically on wsol modules, timm and torchvision models.

    Example:
        >>> cam = create_cam("gradcam", model)
        >>> maps, logits = cam(images, targets=labels)  # (B, h, w), (B, K)
    """

    name: ClassVar[str] = ""
    uses_gradients: ClassVar[bool] = True
    relu: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module | str | None = None,
        classifier: nn.Module | Tensor | None = None,
    ) -> None:
        self.model = model
        self._target_layer = resolve_layer(model, target_layer) if target_layer is not None else None
        self._classifier = classifier

    def target_layer(self, images: Tensor) -> nn.Module:
        """The resolved target layer (probed on ``images[:1]`` the first time when not given)."""
        if self._target_layer is None:
            self._target_layer = default_target_layer(self.model, images[:1])
        return self._target_layer

    def classifier_weight(self, channels: int) -> Tensor:
        """``(K, C)`` weights of the GAP-linear classifier above the target layer."""
        return resolve_classifier(self.model, self._classifier, channels)

    # ------------------------------------------------------------------------------------ override
    def weights(self, inputs: CAMInputs) -> Tensor:
        """Channel weights ``(B, C)``, or element-wise weights ``(B, C, h, w)``, for one target per image."""
        raise NotImplementedError

    def class_maps(self, activations: Tensor, targets: Tensor, logits: Tensor, images: Tensor) -> Tensor:
        """Maps ``(B, T, h, w)`` of gradient-free methods for ``(B, T)`` targets (one pass per column)."""
        maps = [
            self._combine(self.weights(CAMInputs(activations, None, t, logits, images)), activations) for t in targets.T
        ]
        return torch.stack(maps, dim=1)

    # ------------------------------------------------------------------------------------- calling
    def __call__(self, images: Tensor, targets: Targets = None, differentiable: bool = False) -> CAMResult:
        """Maps of ``targets`` for a batch.

        Args:
            images: ``(B, 3, H, W)`` normalised images (moved to the model's device).
            targets: ``None`` (each image's top-1 prediction), a class index for every image, ``(B,)``
                indices, ``(B, T)`` indices (``T`` maps per image) or ``"all"`` (every class).
            differentiable: keep the autograd graph so the maps can enter a loss (gradients reach the
                model's parameters and the images); gradient methods then use ``create_graph=True``.

        Returns:
            The raw maps at the target layer's resolution and the logits.
        """
        if images.ndim != 4:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        param = next(self.model.parameters(), None)
        if param is not None and images.device != param.device:
            images = images.to(param.device)
        if not self.uses_gradients:
            with torch.enable_grad() if differentiable else torch.no_grad():
                return self._run(images, targets, differentiable)
        # Gradients need autograd even under inference_mode (Lightning's validate/test/predict).
        with torch.inference_mode(False):
            if images.is_inference():
                images = images.clone()
            with torch.enable_grad() if differentiable else torch.no_grad():
                return self._run(images, targets, differentiable)

    def _run(self, images: Tensor, targets: Targets, differentiable: bool) -> CAMResult:
        layer = self.target_layer(images)
        grad_from_here = self.uses_gradients and not differentiable
        with ActivationHook(layer, grad_from_here, require_grad=self.uses_gradients) as hook:
            logits = self.model(images)
        if hook.activations is None:
            raise ValueError(f"the target layer {type(layer).__name__} was not called by the model's forward")
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise ValueError(f"the model must return (B, K) logits, got {type(logits).__name__}")
        activations = hook.activations
        target_idx, squeeze = _resolve_targets(targets, logits)
        if self.uses_gradients:
            maps = self._gradient_maps(activations, target_idx, logits, images, differentiable)
        else:
            maps = self.class_maps(activations, target_idx, logits, images)
        if not differentiable:
            maps, logits = maps.detach(), logits.detach()
        return CAMResult(maps[:, 0] if squeeze else maps, logits)

    def _gradient_maps(
        self, activations: Tensor, targets: Tensor, logits: Tensor, images: Tensor, differentiable: bool
    ) -> Tensor:
        rows = torch.arange(len(logits), device=logits.device)
        maps = []
        for column, t in enumerate(targets.T):
            # The images of a batch are independent, so one backward of the summed scores gives every
            # image's own gradient; only the layers above the target layer are traversed.
            score = logits[rows, t].sum()
            keep = differentiable or column < targets.shape[1] - 1
            (grads,) = torch.autograd.grad(score, activations, retain_graph=keep, create_graph=differentiable)
            with torch.enable_grad() if differentiable else torch.no_grad():
                inputs = CAMInputs(activations, grads, t, logits, images)
                maps.append(self._combine(self.weights(inputs), activations))
        return torch.stack(maps, dim=1)

    def _combine(self, weights: Tensor, activations: Tensor) -> Tensor:
        if weights.ndim == 2:
            maps = torch.einsum("bc,bchw->bhw", weights, activations)
        else:
            maps = (weights * activations).sum(dim=1)
        return F.relu(maps) if self.relu else maps


def _resolve_targets(targets: Targets, logits: Tensor) -> tuple[Tensor, bool]:
    """``(B, T)`` long targets and whether the caller asked for one map per image."""
    batch, num_classes = logits.shape
    device = logits.device
    if targets is None:
        idx, squeeze = logits.argmax(dim=1, keepdim=True), True
    elif isinstance(targets, str):
        if targets != "all":
            raise ValueError(f"targets must be None, 'all', an index or indices, got {targets!r}")
        idx, squeeze = torch.arange(num_classes, device=device).expand(batch, num_classes), False
    else:
        idx = torch.as_tensor(targets, device=device).long()
        if idx.is_inference():  # made under inference_mode: autograd may not index with it
            idx = idx.clone()
        squeeze = idx.ndim < 2
        if idx.ndim == 0:
            idx = idx.expand(batch)
        if idx.ndim == 1:
            idx = idx[:, None]
        if idx.ndim != 2 or idx.shape[0] != batch:
            raise ValueError(f"targets of shape {tuple(idx.shape)} do not fit a batch of {batch} images")
    if idx.numel() and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"target classes must lie in [0, {num_classes - 1}], got {idx.unique().tolist()[:10]}")
    return idx, squeeze


def minmax_cams(maps: Tensor, size: tuple[int, int] | None = None, eps: float = 1e-8) -> Tensor:
    """Differentiable per-map min-max to [0, 1], optionally after bilinear upsampling to ``size``.

    This is the training-time counterpart of :func:`wsol.metrics.prepare_scoremaps` (which follows the
    evaluation protocol: float64 bicubic, detached). Works on ``(B, h, w)`` or ``(B, T, h, w)``.
    """
    if maps.ndim not in (3, 4):
        raise ValueError(f"maps must be (B, h, w) or (B, T, h, w), got {tuple(maps.shape)}")
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    if size is not None and tuple(size) != tuple(flat.shape[-2:]):
        flat = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    flat = flat.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    out = (flat - lo) / (hi - lo).clamp_min(eps)
    return out.reshape(*lead, *(size or maps.shape[-2:]))


CAM_METHODS: Registry[type[CAMMethod]] = Registry("CAM method")


def register_cam(name: str) -> Callable[[type[CAMMethod]], type[CAMMethod]]:
    """Class decorator registering a CAM method under ``name`` (:data:`CAM_METHODS`); a duplicate name raises
    ``ValueError``."""

    def decorator(cls: type[CAMMethod]) -> type[CAMMethod]:
        CAM_METHODS.register(name)(cls)
        cls.name = name
        return cls

    return decorator


def list_cams() -> list[str]:
    """Registered CAM method names, sorted."""
    return CAM_METHODS.names()


def create_cam(name: str, model: nn.Module, **kwargs: Any) -> CAMMethod:
    """Build the registered CAM method ``name`` on ``model`` (kwargs go to its constructor)."""
    return CAM_METHODS.get(name)(model, **kwargs)
