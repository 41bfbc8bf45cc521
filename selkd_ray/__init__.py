"""selkd-ray: selective cross-task distillation over a model zoo, on Ray.

Public API (imported lazily, so `import selkd_ray` loads neither Ray nor timm):
    index_zoo(zoo_dir) -> (specs, catalogue_path)
    scan(zoo_dir, task, out_dir, ScanConfig(), address=None) -> ScanResult
    distill(task, teacher_dir, out_dir, DistillConfig(), address=None) -> DistillResult
    select_student(zoo_dir, task, out_dir, SelectConfig(), address=None) -> SelectResult
"""
from __future__ import annotations

from .collector import in_ray_worker, lean_collector

if in_ray_worker():  # a Ray worker about to run our code: its start-up imports torch, timm and POT (collector.py)
    lean_collector()

__all__ = ["index_zoo", "scan", "distill", "select_student", "ScanConfig", "DistillConfig", "SelectConfig", "SelkdError"]


def __getattr__(name: str):
    if name in ("index_zoo", "scan", "distill", "select_student", "SelectConfig"):
        from . import api

        return getattr(api, name)
    if name in ("ScanConfig", "DistillConfig"):
        from . import config

        return getattr(config, name)
    if name == "SelkdError":
        from .errors import SelkdError

        return SelkdError
    raise AttributeError(name)
