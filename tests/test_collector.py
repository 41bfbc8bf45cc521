"""Our own processes collect garbage leanly (selkd_ray/collector.py); a user's process that imports us does not
change."""
import gc
import subprocess
import sys

from selkd_ray.collector import THRESHOLDS

DEFAULT = (700, 10, 10)  # CPython's


def thresholds_in_a_fresh_process(code: str) -> tuple[int, ...]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport gc\nprint(tuple(gc.get_threshold()))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return tuple(int(n) for n in done.stdout.strip().strip("()").split(","))


def test_a_ray_worker_running_our_code_collects_leanly(ray_session):
    import ray

    @ray.remote(num_cpus=0)
    def worker_thresholds():
        import gc

        from selkd_ray.config import ScanConfig  # what unpickling any of our actors or tasks imports first

        assert ScanConfig
        return tuple(gc.get_threshold())

    assert ray.get(worker_thresholds.remote()) == THRESHOLDS != DEFAULT


def test_the_command_collects_leanly_and_a_users_process_is_left_as_it_is():
    assert thresholds_in_a_fresh_process("import selkd_cli.main") == THRESHOLDS
    assert thresholds_in_a_fresh_process("import selkd_ray, selkd_ray.api\nfrom selkd_ray import ScanConfig") == DEFAULT


def test_the_heap_is_frozen_at_exit_so_finalisation_walks_nothing():
    code = ("import atexit, gc\n"  # atexit runs its handlers last-registered first: this one after the freeze
            "atexit.register(lambda: print(gc.get_freeze_count() > 0, flush=True))\n"
            "from selkd_ray.collector import lean_collector\nlean_collector()\nlean_collector()\n"
            "print(gc.get_freeze_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "True"]  # nothing frozen while it runs; everything once it ends
    assert gc.get_threshold() == THRESHOLDS  # the suite's own process, as conftest asks
