import argparse

import pytest

from wsol.registry import Registry


def test_registry_registers_lists_sorted_and_names_the_known_on_a_miss():
    reg: Registry[object] = Registry("gadget", hint="or 'x:<name>'")

    @reg.register()
    def zeta() -> None: ...

    reg.register("alpha")(int)
    assert reg.names() == ["alpha", "zeta"] and list(reg) == ["alpha", "zeta"] and len(reg) == 2
    assert reg.get("zeta") is zeta and "alpha" in reg and "beta" not in reg
    with pytest.raises(KeyError, match=r"unknown gadget 'beta'; registered: alpha, zeta, or 'x:<name>'"):
        reg.get("beta")
    with pytest.raises(ValueError, match="gadget 'alpha' is already registered"):
        reg.register("alpha")(float)
    assert reg.remove("alpha") is int and reg.names() == ["zeta"]


def test_registry_loader_runs_once_on_first_use_and_retries_after_a_failure():
    calls = []
    reg: Registry[int] = Registry("thing")

    def loader() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("missing optional dependency")
        reg.register("one")(1)

    reg._loader = loader
    with pytest.raises(ImportError):
        reg.names()
    assert reg.names() == ["one"] and reg.names() == ["one"] and len(calls) == 2


def test_every_plugin_kind_uses_the_one_registry():
    import wsol.methods
    from wsol.augment import MIXERS
    from wsol.cams import CAM_METHODS
    from wsol.data import READERS
    from wsol.data.datasets import _BUILTIN as BUILTIN_READERS
    from wsol.methods import METHODS, WSOLModule
    from wsol.models import BACKBONES
    from wsol.study import SMALL_DATA_METHODS, STUDY_ROWS

    for reg in (BACKBONES, MIXERS, CAM_METHODS, READERS, METHODS, STUDY_ROWS):
        assert isinstance(reg, Registry) and reg.names() == sorted(reg.names()) and len(reg) > 3
    # The built-ins each registry must hold, derived from what the packages export rather than kept by hand.
    exported = {
        name
        for name in wsol.methods.__all__
        if isinstance(getattr(wsol.methods, name), type) and issubclass(getattr(wsol.methods, name), WSOLModule)
    }
    assert exported - {"WSOLModule"} <= set(METHODS.names()) and len(exported) > 9
    assert all(METHODS.get(name) is getattr(wsol.methods, name) for name in exported - {"WSOLModule"})
    assert set(BUILTIN_READERS) <= set(READERS.names())
    assert [name for name, _ in STUDY_ROWS.entries()][: len(SMALL_DATA_METHODS)] == [r.name for r in SMALL_DATA_METHODS]
    assert BACKBONES.prefixes() == ["timm:"] and callable(BACKBONES.get("timm:resnet18"))


def test_deprecated_spelling_prints_one_line_and_stores_the_new_value(capsys):
    from wsol.commands.arguments import add_deprecated

    parser = argparse.ArgumentParser(prog="wsol demo")
    parser.add_argument("--cam-method")
    parser.add_argument("--no-parity", action="store_true")
    add_deprecated(parser, "--method", "cam_method", "use --cam-method", takes_value=True)
    add_deprecated(parser, "--skip-parity", "no_parity", "use --no-parity")
    add_deprecated(parser, "--checkpoint-class", None, "ignored", takes_value=True)
    args = parser.parse_args(["--method", "gradcam", "--skip-parity", "--checkpoint-class", "SEAM"])
    assert args.cam_method == "gradcam" and args.no_parity is True
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "wsol demo: note: --method is deprecated; use --cam-method",
        "wsol demo: note: --skip-parity is deprecated; use --no-parity",
        "wsol demo: note: --checkpoint-class is deprecated; ignored",
    ]
    assert "--method" not in parser.format_help()  # old spellings are hidden from --help


def test_one_data_parser_for_every_command(tmp_path):
    from wsol.commands.arguments import parse_data, parse_data_spec

    # wsol study: a bare folder is Tiny ImageNet; the deprecated --dataset names the reader of any bare text
    assert parse_data("synthetic", folder_reader="tiny_imagenet") == ("synthetic", None)
    assert parse_data("tiny_imagenet=/data/tin", folder_reader="tiny_imagenet") == ("tiny_imagenet", "/data/tin")
    assert parse_data("/data/tin", folder_reader="tiny_imagenet") == ("tiny_imagenet", "/data/tin")
    assert parse_data("/data/x", "tiny_imagenet", reader="folder") == ("folder", "/data/x")
    assert parse_data("voc=/v", "tiny_imagenet", reader="folder") == ("voc", "/v")
    # wsol cams / metadata / leaderboard / pseudo-masks: a bare folder is read by the reader its layout shows
    (tmp_path / "tin").mkdir()
    (tmp_path / "tin" / "wnids.txt").write_text("n0\n")
    (tmp_path / "ref" / "metadata").mkdir(parents=True)
    assert parse_data(str(tmp_path / "tin")) == ("tiny_imagenet", str(tmp_path / "tin"))
    assert parse_data(str(tmp_path / "ref")) == ("wsoleval", str(tmp_path / "ref"))
    assert parse_data("coco") == ("coco", None) and parse_data("voc=a=b") == ("voc", "a=b")
    spec = parse_data_spec("synthetic", "train", {"b": 1, "a": 2})
    assert (spec.reader, spec.root, spec.split, spec.options) == ("synthetic", None, "train", (("a", 2), ("b", 1)))
    with pytest.raises(ValueError, match=r"^unknown dataset reader 'nope' in --data; registered: .*synthetic"):
        parse_data("nope=/x", folder_reader="tiny_imagenet")
    with pytest.raises(FileNotFoundError, match=r"^--data 'missing' is neither a registered dataset name nor a folder"):
        parse_data("missing")
    with pytest.raises(ValueError, match=r"^cannot tell the layout of .*; pass NAME=PATH with NAME one of "):
        parse_data(str(tmp_path))


def test_resolve_device_names_the_flag():
    from wsol.commands.arguments import resolve_device

    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="--device"):
        resolve_device("toaster")


def test_no_two_public_classes_share_a_name():
    import importlib
    import pkgutil

    import wsol

    seen: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(wsol.__path__, "wsol."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if isinstance(obj, type) and obj.__module__.startswith("wsol."):
                seen.setdefault(obj.__name__, set()).add(f"{obj.__module__}.{obj.__qualname__}")
    assert len(seen) > 40
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}
