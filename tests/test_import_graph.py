"""The package layers: nothing imports a package of a higher layer (read from the source, with ast).

    fileio -> backbones -> engine, evaluation -> pretrain, seg, track, analysis -> benchmarks (and tools/)
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"fileio": 0, "backbones": 1, "engine": 2, "evaluation": 2, "pretrain": 3, "seg": 3, "track": 3,
          "analysis": 3, "benchmarks": 4}
TORCH_FREE = ("fileio", "evaluation")


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages a file imports (absolute imports; relative ones stay in its package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_package_imports_a_higher_layer():
    upward = []
    for package, layer in LAYERS.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for imported in imported_packages(path) & LAYERS.keys():
                if LAYERS[imported] > layer:
                    upward.append(f"{path.relative_to(REPO)} imports {imported}")
    assert not upward, "\n".join(upward)


def test_torch_free_packages_import_no_torch():
    heavy = {"torch", "torchvision", "timm", "mmcv", "mmseg", "mmengine", "cv2"}
    found = [f"{path.relative_to(REPO)} imports {', '.join(sorted(imported_packages(path) & heavy))}"
             for package in TORCH_FREE for path in sorted((REPO / package).rglob("*.py"))
             if imported_packages(path) & heavy]
    assert not found, "\n".join(found)


def test_the_checker_sees_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import torch.nn as nn\nfrom benchmarks.peers import load_peers\nfrom .x import y\n"
                      "def f():\n    from track import tracker\n")
    assert imported_packages(source) == {"torch", "benchmarks", "track"}


CORE = ("fileio", "backbones", "engine", "evaluation", "pretrain", "track", "analysis")


def test_core_imports_without_mmcv_and_mmseg(tmp_path, run_blocked):
    """Every module of the core packages imports where mmcv and mmseg cannot be (``setup.py``'s core
    install); ``import seg`` there fails with an ImportError that names the extra to install."""
    run = run_blocked(f"""
        import importlib, pkgutil
        for package in {CORE!r}:
            module = importlib.import_module(package)
            for info in pkgutil.walk_packages(module.__path__, package + "."):
                importlib.import_module(info.name)
        try:
            import seg
        except ImportError as error:
            print("seg:", error)
        else:
            raise AssertionError("seg imported without mmcv / mmseg")
    """, tmp_path, ("mmcv", "mmseg"), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "pip install 'litevit[seg]'" in run.stdout and "mmcv is blocked" in run.stdout
