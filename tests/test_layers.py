"""Layering: the maths, the I/O and the models import without Ray; only selkd_ray.distributed imports it."""
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "selkd_ray"


def test_core_modules_import_without_ray():
    code = ("import sys; sys.modules['ray'] = None\n"
            "import selkd_ray.api, selkd_ray.scoring.scores, selkd_ray.training.losses, selkd_ray.io.cache, "
            "selkd_ray.demo.run, selkd_ray.plans.select, selkd_ray.selection, selkd_ray.reports.html\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_only_the_distributed_layer_imports_ray_and_only_io_imports_pyarrow():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith("distributed/"):
            assert "import ray" not in text and "from ray" not in text, relative
        if not relative.startswith("io/"):
            assert "import pyarrow" not in text, relative
        if relative not in ("models/timm_models.py", "models/forward.py"):
            assert "import timm" not in text and "from timm" not in text, relative
        if relative != "pot.py":  # POT comes through selkd_ray.pot (`from ..pot import ot`)
            assert not re.search(r"^\s*(import ot\b|from ot[. ])", text, re.MULTILINE), relative


def test_pot_is_imported_without_scikit_learn_which_imports_as_usual_afterwards():
    """selkd_ray/pot.py: POT's `sklearn.cluster` import (ot.lowrank's k-means start) is skipped, ~0.5 s of CPU
    in every actor, trial and worker; scikit-learn itself is left importable (our published scorers use it)."""
    code = ("import sys\nimport selkd_ray.training.losses, selkd_ray.scoring.scores\nfrom selkd_ray.pot import ot\n"
            "print('sklearn' in sys.modules, ot.emd2([0.5, 0.5], [0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]]))\n"
            "import sklearn.cluster\nprint(sklearn.cluster.KMeans.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "0.0", "KMeans"], done.stderr[-2000:]


def test_one_forward_path_runs_every_model_and_moves_every_tensor():
    """Only models/forward.py runs a model's forward on images or moves tensors between host and device."""
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "models/forward.py":
            continue
        text = path.read_text()
        for marker in ("forward_features(", "forward_head(", ".cpu()", ".cuda(", "pin_memory", ".numpy()"):
            assert marker not in text, (relative, marker)


def module_imports() -> dict[str, set[str]]:
    """Every selkd_ray module (and cli/) with the selkd_ray modules it imports, lazy imports included."""
    import ast

    graph = {}
    for root, package in ((PACKAGE, "selkd_ray"), (PACKAGE.parent / "cli", "selkd_cli")):
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            here = parts[:-1]  # the package a relative import starts from
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                        if node.level else node.module
                    found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
            graph[name] = found
    return {name: {m for m in found if m in graph and m != name} for name, found in graph.items()}


def test_the_import_graph_has_no_circle():
    """No module imports, directly or through others, one that imports it back (a registry that its entries
    register into, never one that imports its entries and is imported by them)."""
    graph = module_imports()
    assert graph["selkd_ray.scoring.published"] >= {"selkd_ray.scoring.registry"}  # the graph is really read
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            assert state.get(target) != 1, " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_every_library_file_is_at_most_300_lines():
    long = {path.relative_to(PACKAGE.parent).as_posix(): n for path in [*PACKAGE.rglob("*.py"),
                                                                         *(PACKAGE.parent / "cli").rglob("*.py")]
            if (n := len(path.read_text().splitlines())) > 300}
    assert not long, long
