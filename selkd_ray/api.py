"""The Python API: index a zoo, scan it against a task, distill a teacher, select a student; nothing else.

Each job lives in one module of `selkd_ray.plans` and connects to Ray only when it needs it (reusing a running
Ray, e.g. inside a Ray job).
"""
from __future__ import annotations

from .config import DistillConfig, ScanConfig
from .errors import SelkdError
from .plans.distill import DistillResult, distill
from .plans.index import index_zoo
from .plans.scan import ScanResult, scan
from .plans.select import SelectResult, select_student
from .selection import SelectConfig

__all__ = ["index_zoo", "scan", "distill", "select_student", "ScanConfig", "DistillConfig", "SelectConfig",
           "ScanResult", "DistillResult", "SelectResult", "SelkdError"]
