"""Layering: the maths, the I/O and the models import without Ray; only selkd_ray.distributed imports it."""
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


def test_one_forward_path_runs_every_model_and_moves_every_tensor():
    """Only models/forward.py runs a model's forward on images or moves tensors between host and device."""
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "models/forward.py":
            continue
        text = path.read_text()
        for marker in ("forward_features(", "forward_head(", ".cpu()", ".cuda(", "pin_memory", ".numpy()"):
            assert marker not in text, (relative, marker)
