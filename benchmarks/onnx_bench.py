"""Run the ONNX Runtime benchmark runner without importing wsol (so without torch).

The runner lives in ``wsol/ortbench/``; this script loads that folder by path as the package
``ortbench``. On a device, copy ``wsol/ortbench/`` (and optionally this script next to it) and run

    python3 benchmarks/onnx_bench.py --model model.onnx --providers tensorrt --fp16 --batch-sizes 1,8,32
    python3 -m ortbench --model model.onnx ...   # from the folder that contains ortbench/

Same flags as ``wsol bench onnx``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def load_ortbench():
    """Import ``ortbench`` from beside this script or from the repository's ``wsol/ortbench``."""
    here = Path(__file__).resolve().parent
    for folder in (here / "ortbench", here.parent / "wsol" / "ortbench"):
        if (folder / "__init__.py").is_file():
            spec = importlib.util.spec_from_file_location(
                "ortbench", folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules["ortbench"] = module
            spec.loader.exec_module(module)
            return module
    raise SystemExit("ortbench not found: keep wsol/ortbench/ (or a copy named ortbench/) beside this script")


if __name__ == "__main__":
    load_ortbench()
    from ortbench.cli import main

    sys.exit(main())
