"""The prepared GPU check's --quick mode: the same script on the CPU, every step, under a minute of work."""
import json

import pytest
import torch
from helpers.background import finished

# as it runs on a lent GPU machine: a fresh process with its own Ray; beside the suite (helpers/background.py)
CHECK = ("bench/gpu.py", "--quick", "--out", "{out}")


@pytest.mark.background("gpu-check", *CHECK, lane="tests")
def test_the_gpu_check_runs_quick_on_the_cpu():
    done, tmp_path = finished("gpu-check", CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu-bench.json").read_text())
    assert figures["quick"] and figures["device"] == "cpu"
    tests = figures["tests"]
    if torch.cuda.is_available():  # the cuda tests ran, and passed
        assert tests["ran"] and tests["exit_code"] == 0 and " passed" in tests["summary"], tests
        assert " failed" not in tests["summary"] and " error" not in tests["summary"]
    else:  # not started, and the reason said
        assert not tests["ran"] and tests["summary"] == "not run: torch sees no CUDA device here", tests
    teachers = figures["scan"]["teachers"]
    assert len(teachers) == 3 and {row["architecture"] for row in teachers} == {"test_resnet", "test_efficientnet",
                                                                               "test_vit"}
    assert all(row["load_s"] > 0 and row["copy_s"] >= 0 and row["run_s"] > 0 and row["bytes"] > 0 for row in teachers)
    scan = figures["scan"]
    assert scan["probe_images"] == 50 and scan["scan_wall_s"] > 0 and 0 < scan["share_of_limit"]
    assert scan["limit_s"] >= max(row["bytes"] for row in teachers) / scan["read_bandwidth_bytes_s"]
    step = figures["step"]  # both steps timed, and the ratio of the two (its size is a figure, not a test)
    assert step["ce_step_s"] > 0 and step["ot_step_s"] > 0 and step["ot_over_ce"] == step["ot_step_s"] / step["ce_step_s"]
    assert "(c) distillation step" in done.stdout and "of it" in done.stdout
