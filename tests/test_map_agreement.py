"""One map per method: validation's ``val/MaxBoxAccV2``, the study and ``wsol cams --cam-method native`` score the
same raw map of each image's class, for every registered training method (ACoL's erase-by-class included)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wsol.cams import create_cam
from wsol.methods import METHODS
from wsol.study.scoring import collect_maps

K = 3


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    backbone_kwargs = {"width": 8, "stem_stride": 2, "last_stride": 1}  # 4x4 maps at 32 px
    model = METHODS.get(name)(backbone="resnet10", num_classes=K, backbone_kwargs=backbone_kwargs, batch_size=4)
    with torch.no_grad():  # untrained heads give near-constant maps; spread them so that a difference shows
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("name", METHODS.names())
def test_validation_study_and_native_score_the_same_map(name, monkeypatch):
    import wsol.methods.base as base

    model = _model(name)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    labels = (predicted + 1) % K  # every image misclassified: a map that followed the prediction would differ
    batch = {
        "image": images,
        "label": labels,
        "target": F.one_hot(labels, K).float(),
        "boxes": [torch.tensor([[4.0, 4.0, 20.0, 20.0]])] * 4,
        "image_id": [f"i{k}" for k in range(4)],
    }
    seen: list[torch.Tensor] = []
    prepare = base.prepare_scoremaps

    def spy(maps: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(maps.clone())
        return prepare(maps, *args, **kwargs)

    monkeypatch.setattr(base, "prepare_scoremaps", spy)
    with torch.no_grad():
        model.validation_step(batch, 0)
        model.predict_step(batch, 0)
    validation, predicted_maps = seen
    study = torch.from_numpy(collect_maps(model, [batch]).maps)
    native = create_cam("native", model.net)(images, labels).maps

    assert validation.shape == (4, 4, 4) and validation.std() > 0
    torch.testing.assert_close(predicted_maps, validation)
    torch.testing.assert_close(study, validation.float())
    torch.testing.assert_close(native, validation)
