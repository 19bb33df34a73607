"""Arrows point down: no module of ``rsfm`` imports a module of a higher layer.

The layers, lowest first (a module may import its own layer and those below it):

    base        rsfm._compat                     environment fixes every layer imports first
    models      rsfm.models.*                    backbones, heads, backbone checkpoints
    data        rsfm.data.*, rsfm._images        datasets, datamodules, the tile grid, preparation;
                                                 rsfm._images turns what users pass (paths, arrays,
                                                 tensors) into images with rsfm.data.io, for the
                                                 predictors and inference
    tasks       rsfm.tasks.*                     LightningModules, task checkpoints, task export
    inference   rsfm.inference.*                 tiled GeoTIFF inference (predict_raster)
    predictors  rsfm.scene_classifier,           the Python predictors over a task
                rsfm.building_extractor,
                rsfm.change_detector
    api         rsfm (its __init__),             the public lazy names, rsfm.load_checkpoint's
                rsfm.loading, rsfm.cli.*         dispatch, and the command line

``data`` sits beside ``tasks``: tasks read the data layer's descriptions (pixel ranges,
transforms), data never imports a task. The predictors sit on ``inference``
(``BuildingExtractor.predict_raster`` runs the tiled pipeline); inference never imports a
predictor, and neither imports the command line.

Every ``import``/``from ... import`` of the package is walked with ``ast``, at module level,
inside functions and under ``TYPE_CHECKING`` alike, since each is an arrow between modules.
``from rsfm import name`` counts as importing the submodule ``rsfm.name`` when there is one
and the package's public API (``rsfm``, the api layer) otherwise. A string that names a module
(``"rsfm.tasks"``, ``"rsfm.cli.export:main"``) counts too: that is how lazy maps and command
tables import.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "rsfm"

# module prefix -> layer; the longest matching prefix decides. "rsfm" is the package's
# __init__ only: a new top-level module must be given its layer here (test_every_module_has_a_layer).
LAYER_OF_PREFIX: Dict[str, str] = {
    "rsfm": "api",  # rsfm/__init__.py: the lazy public names
    "rsfm.loading": "api",
    "rsfm.cli": "api",
    "rsfm._compat": "base",
    "rsfm._images": "data",
    "rsfm.models": "models",
    "rsfm.data": "data",
    "rsfm.tasks": "tasks",
    "rsfm.inference": "inference",
    "rsfm.scene_classifier": "predictors",
    "rsfm.building_extractor": "predictors",
    "rsfm.change_detector": "predictors",
}

# layer -> the layers it may import (besides its own)
MAY_IMPORT: Dict[str, Set[str]] = {
    "base": set(),
    "models": {"base"},
    "data": {"base", "models"},
    "tasks": {"base", "models", "data"},
    "inference": {"base", "models", "data", "tasks"},
    "predictors": {"base", "models", "data", "tasks", "inference"},
    "api": {"base", "models", "data", "tasks", "inference", "predictors"},
}

RULES = {
    "models": "models must not import data, tasks, inference, predictors or the API/CLI",
    "data": "data must not import tasks, inference, predictors or the API/CLI",
    "tasks": "tasks must not import inference, predictors or the API/CLI",
    "inference": "inference must not import predictors or the API/CLI",
    "predictors": "predictors must not import the API/CLI",
    "base": "rsfm._compat must not import any other rsfm module (every layer imports it first)",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def layer_of(module: str) -> Optional[str]:
    """The layer of an ``rsfm`` module; None for modules outside the package."""
    best = None
    for prefix in LAYER_OF_PREFIX:
        covers = module == prefix or (prefix != "rsfm" and module.startswith(prefix + "."))
        if covers and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else LAYER_OF_PREFIX[best]


def _imports(module: str, path: Path) -> Iterator[Tuple[int, str]]:
    """(line, imported rsfm module) for every import statement of a module."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rsfm" or alias.name.startswith("rsfm."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            if not (base == "rsfm" or base.startswith("rsfm.")):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield node.lineno, submodule if submodule in MODULES else base
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # imports by name: lazy maps ("rsfm.tasks") and command tables ("rsfm.cli.export:main")
            named = node.value.split(":")[0]
            if named.startswith("rsfm.") and named in MODULES and named != module:
                yield node.lineno, named


def upward_imports() -> List[str]:
    problems: List[str] = []
    for module, path in MODULES.items():
        layer = layer_of(module)
        for line, imported in _imports(module, path):
            target = layer_of(imported)
            if target is None or target == layer or target in MAY_IMPORT[layer]:
                continue
            where = path.relative_to(PACKAGE.parent)
            problem = f"{where}:{line}: {module} ({layer}) imports {imported} ({target}): {RULES[layer]}"
            if problem not in problems:  # one line of `from x import a, b` is one arrow
                problems.append(problem)
    return problems


def test_every_module_has_a_layer():
    assert {module: layer_of(module) for module in MODULES if layer_of(module) is None} == {}
    assert layer_of("rsfm") == "api" and layer_of("rsfm.cli.export") == "api" and layer_of("rsfm.new") is None
    assert layer_of("rsfm.data.tiling") == "data" and layer_of("rsfm.scene_classifier") == "predictors"


def test_no_module_imports_a_higher_layer():
    problems = upward_imports()
    assert not problems, "upward imports (arrows must point down):\n" + "\n".join(problems)


def test_the_walk_finds_function_level_and_relative_imports(tmp_path):
    """The checker itself: a hidden upward import inside a function is caught."""
    source = (
        "def f():\n    from rsfm.tasks.base import load_task\n    from . import vitaev2\n"
        "LAZY = {'predict_raster': 'rsfm.inference'}\n"
    )
    path = tmp_path / "factory.py"
    path.write_text(source)
    found = list(_imports("rsfm.models.factory", path))
    assert (2, "rsfm.tasks.base") in found and (3, "rsfm.models.vitaev2") in found
    assert (4, "rsfm.inference") in found
