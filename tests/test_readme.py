"""The README's and docs/library.md's Python examples run as written, and so does the README's recipe
"your data in three commands" (on a tiny generated Tiny ImageNet folder, with options that only make it fast)."""

import json
import re
import shlex
from pathlib import Path

import pytest
from dataset_fixtures import write_tiny_imagenet

from wsol.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = {"README.md": README, "docs/library.md": (ROOT / "docs" / "library.md").read_text()}
BLOCKS = [(name, block) for name, text in PAGES.items() for block in re.findall(r"```python\n(.*?)```", text, re.S)]
RECIPE = re.search(r"## Your data in three commands\n.*?```bash\n(.*?)```", README, re.S)

# Speed only: one batch of one epoch at 32 px, no logger or progress bars; the commands are the README's.
FAST = {
    "fit": "--trainer.max_epochs 1 --trainer.limit_train_batches 1 --trainer.logger false "
    "--trainer.enable_progress_bar false --trainer.enable_model_summary false --data.init_args.image_size 32 "
    "--data.init_args.batch_size 4 --data.init_args.num_workers 0",
    "cams": "--image-size 32 --device cpu",
    "evaluate": "",
}


def test_pages_have_examples():
    assert sum(name == "README.md" for name, _ in BLOCKS) >= 1 and len(BLOCKS) >= 4
    assert len(README.splitlines()) <= 130


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{name}-{i}" for i, (name, _) in enumerate(BLOCKS)])
def test_example_runs(index, capsys):
    name, block = BLOCKS[index]
    exec(compile(block, f"{name} python block {index}", "exec"), {})
    if "BoxAccumulator" in block:
        assert capsys.readouterr().out.strip() == "100.0"


@pytest.mark.slow
def test_your_data_in_three_commands(tmp_path, monkeypatch):
    assert RECIPE is not None, "README.md has no bash block under 'Your data in three commands'"
    lines = [line for line in RECIPE.group(1).splitlines() if line.startswith("wsol ")]
    assert [shlex.split(line)[1] for line in lines] == ["fit", "cams", "evaluate"]
    write_tiny_imagenet(tmp_path / "tin", per_class=2)
    monkeypatch.chdir(tmp_path)
    for line in lines:
        argv = shlex.split(line.replace("experiments/", f"{ROOT / 'experiments'}/"))[1:]
        argv = [str(tmp_path / "tin") if a == "DATA" else a for a in argv] + shlex.split(FAST[argv[0]])
        assert main(argv) == 0, line
    result = json.loads((tmp_path / "runs" / "mine" / "eval" / "metrics.json").read_text())
    assert 0.0 <= result["MaxBoxAccV2"]["value"] <= 100.0, result
