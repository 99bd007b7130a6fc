"""Layers only look down: no module of mfpde imports (at the top or inside a function) from a
higher layer. The floor plan is docs/architecture.md; a new module must be given a layer here."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "mfpde"

#: (module prefix, layer), most specific prefix first; lower numbers are lower layers
LAYERS = [
    ("_version", 0), ("errors", 0), ("_numba", 0), ("_blas", 0), ("_pool", 0), ("kernels", 0),
    ("activations", 1), ("rules", 1), ("store", 1), ("executors", 1),
    ("data", 2), ("models", 2), ("metrics", 2),
    ("engine", 3), ("dynamics", 3), ("meanfield", 3), ("sparse", 3),
    ("observables", 4), ("observers", 4), ("observables_nc", 4),
    ("coupling", 5), ("two_stage", 5),
    ("config", 6),
    ("build", 7),
    ("runner", 8), ("compare", 8), ("analysis", 8), ("plotting", 8), ("sweep", 8),
    ("parallel", 3),
    ("validation", 9), ("cli", 10), ("cli_sparse", 10), ("cli_analysis", 10), ("cli_sweep", 10),
    ("__main__", 10), ("__init__", 11),
]


def layer_of(module: str) -> int | None:
    """Layer of ``mfpde.<module>`` (dotted, without the package name)."""
    best = None
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(module: str, path: Path):
    """``(imported mfpde module, line)`` for every import statement, also inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(anchor + ([node.module] if node.module else []))
                names = [a.name for a in node.names]
                if not node.module:
                    for n in names:
                        yield ".".join(anchor + [n]), node.lineno
                    continue
                yield target, node.lineno
            elif node.module and (node.module == "mfpde" or node.module.startswith("mfpde.")):
                target = node.module[len("mfpde."):] if node.module != "mfpde" else "__init__"
                if target == "__init__":
                    for a in node.names:
                        if a.name == "__version__":     # the root is lazy: loads nothing
                            continue
                        yield a.name if layer_of(a.name) is not None else "__init__", node.lineno
                else:
                    yield target, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mfpde."):
                    yield a.name[len("mfpde."):], node.lineno


def test_every_module_has_a_layer():
    missing = [m for m, _ in _modules() if layer_of(m) is None]
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


def test_no_import_looks_up():
    bad = []
    for module, path in _modules():
        mine = layer_of(module)
        if module in ("__init__", "__main__"):
            continue
        for target, line in _imports(module, path):
            if target in ("", "__init__"):
                bad.append(f"{module}:{line} imports the package root")
                continue
            theirs = layer_of(target)
            if theirs is None:
                continue
            if theirs > mine:
                bad.append(f"{module}:{line} (layer {mine}) imports {target} (layer {theirs})")
    assert not bad, "imports that look up:\n" + "\n".join(bad)


@pytest.mark.parametrize("forbidden", ["dynamics", "runner", "store", "cli", "engine", "build"])
def test_models_know_nothing_of_drivers_runners_stores(forbidden):
    for module, path in _modules():
        if not module.startswith("models"):
            continue
        for target, line in _imports(module, path):
            assert not (target == forbidden or target.startswith(forbidden + ".")), \
                f"{module}:{line} imports {target}"
