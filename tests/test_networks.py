"""Networks apart from training systems: every method holds a plain ``nn.Module`` network (``system.net``), which
is what ``wsol.load_model`` returns and what export, post-hoc CAMs and WSSS run; checkpoints of the earlier
layout (network weights at the top of the state dict) still load."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import save_lightning_checkpoint
from torch import nn

from wsol.methods import ADL, CAM, SEAM, get_method, list_methods, load_checkpoint, load_model
from wsol.methods.base import migrate_state_dict
from wsol.models import CAMHead, CAMNet, as_network, create_backbone

TINY = {"backbone": "resnet10", "backbone_kwargs": {"stem_stride": 2, "width": 8}, "num_classes": 3}


@pytest.mark.parametrize("name", list_methods())
def test_every_system_holds_a_plain_network_that_owns_its_maps(name: str) -> None:
    torch.manual_seed(0)
    system = get_method(name)(**TINY).eval()
    net = system.net
    assert isinstance(net, CAMNet) and not isinstance(net, pl.LightningModule)
    assert as_network(system) is net and as_network(net) is net
    assert system.backbone is net.backbone and system.head is net.head and net.num_classes == 3
    # Every parameter of the network is the system's, under "net."; what a method adds for training only is not.
    net_params = {f"net.{n}" for n, _ in net.named_parameters()}
    assert net_params <= {n for n, _ in system.named_parameters()}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(system(x), net(x), rtol=0, atol=0)
        torch.testing.assert_close(system.cams(x, [2, 0]), net.cams(x, [2, 0]), rtol=0, atol=0)


def test_head_modules_are_the_network_additions_plus_training_only_ones() -> None:
    seam = get_method("SEAM")(**TINY)
    assert seam.head_modules() == (seam.net.head, seam.net.pcm)
    spg = get_method("SPG")(**TINY)  # the guidance branches train only: they stay out of the network
    assert spg.head_modules() == (spg.net.head, spg.branches) and not hasattr(spg.net, "branches")


def test_checkpoint_of_the_earlier_layout_loads(tmp_path) -> None:
    torch.manual_seed(0)
    model = SEAM(**TINY).eval()
    old = {k.removeprefix("net."): v for k, v in model.state_dict().items()}  # backbone.*, head.*, pcm.*
    assert not any(k.startswith("net.") for k in old)
    save_lightning_checkpoint(tmp_path / "old.ckpt", model, old)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.forward_with_cams(x)[1]
        torch.testing.assert_close(load_model(tmp_path / "old.ckpt").forward_with_cams(x)[1], expected, rtol=0, atol=0)
        torch.testing.assert_close(load_checkpoint(tmp_path / "old.ckpt").cams(x), expected, rtol=0, atol=0)


def test_migrate_state_dict_moves_only_the_keys_the_module_has_under_net() -> None:
    expected = ["net.backbone.w", "net.head.w", "branches.b1.w"]
    state = {"backbone.w": 1, "head.w": 2, "branches.b1.w": 3, "stray": 5}
    migrated = migrate_state_dict(state, expected)
    assert migrated == {"net.backbone.w": 1, "net.head.w": 2, "branches.b1.w": 3, "stray": 5}
    assert migrate_state_dict(migrated, expected) == migrated  # a current checkpoint is left as it is


def test_setting_the_head_on_the_system_replaces_the_networks_head() -> None:
    system = CAM(**TINY)
    new = CAMHead(system.backbone.out_channels, 3)
    system.head = new
    assert system.net.head is new and "head" not in system._modules
    assert [n for n, _ in system.named_parameters() if "head" in n] == ["net.head.conv.weight", "net.head.conv.bias"]


def test_adl_network_in_eval_mode_never_drops_even_inside_a_training_system() -> None:
    torch.manual_seed(0)
    system = ADL(adl_drop_rate=1.0, adl_threshold=0.0, seed=0, **TINY)  # always drop, everything above 0
    system.train()
    x = torch.randn(2, 3, 32, 32)
    system.net.eval()
    with torch.no_grad():
        eval_out = system.net(x)
        plain = CAMNet(system.net.backbone, system.net.head)  # same modules, so the same hooks
        torch.testing.assert_close(eval_out, plain(x), rtol=0, atol=0)
        system.net.train()
        assert not torch.allclose(system.net(x), eval_out)  # training mode: ADL drops


def test_multilabel_is_recorded_on_the_network() -> None:
    assert CAM(multilabel=True, **TINY).net.multilabel and not CAM(**TINY).net.multilabel


def test_a_network_needs_a_backbone_contract() -> None:
    with pytest.raises(ValueError, match="must expose 'out_channels'"):
        CAMNet(nn.Identity(), CAMHead(4, 2))
    net = CAMNet(create_backbone("resnet10", width=8), CAMHead(64, 2)).eval()
    with pytest.raises(ValueError, match="class indices must lie in \\[0, 1\\]"):
        net.cams(torch.randn(1, 3, 32, 32), [2])
    with pytest.raises(ValueError, match="classes has 2 entries for a batch of 1 images"):
        net.cams(torch.randn(1, 3, 32, 32), [0, 1])
