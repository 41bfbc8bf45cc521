"""What a user's terminal shows is ours: Ray's C++ core and raylet lines stay in Ray's session folder unless
`selkd --verbose` (SELKD_RAY_LOGS=1) asks for them."""
import os
import subprocess
import sys

from helpers.network import ray_lines

# A driver that makes Ray's C++ core log (at error level, though nothing fails): an actor whose constructor
# argument lies in the object store and that may restart, as Ray Data's actor pools are made.
DRIVER = """
import numpy as np, ray
from selkd_ray.distributed.runtime import connect
connect(num_cpus=1)

@ray.remote(max_restarts=1, num_cpus=0)
class Holder:
    def __init__(self, payload):
        self.size = len(payload)

    def get(self):
        return self.size

print("held", ray.get(Holder.remote(np.zeros(2_000_000)).get.remote()))
"""


def test_ray_lines_stay_off_the_terminal_unless_asked_for():
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_BACKEND_LOG_LEVEL")}
    runs = {shown: subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env={**env, "SELKD_RAY_LOGS": shown})
            for shown in ("0", "1")}
    done = {shown: run.communicate(timeout=300) for shown, run in runs.items()}
    for shown, run in runs.items():
        assert run.returncode == 0, done[shown][1][-3000:]
        assert done[shown][0].strip() == "held 2000000"
    assert ray_lines(done["0"][1]) == [], done["0"][1][-3000:]
    shown = ray_lines(done["1"][1])  # the same driver with Ray's lines asked for: the check can fail
    assert shown and "core_worker.cc" in shown[0], done["1"][1][-3000:]


def test_the_raylets_messages_are_not_printed_on_stdout(ray_session, capsys):
    """The driver relays each raylet message (e.g. "8 PYTHON worker processes have been started") to stdout,
    where it would break `--json`: no longer."""
    import ray._private.worker as ray_worker

    ray_worker.print_to_stdstream({"lines": ["WARNING: 8 PYTHON worker processes"], "pid": "raylet",
                                   "is_err": False, "ip": "127.0.0.2", "actor_name": "", "task_name": ""},
                                  ignore_prefix=False)
    assert capsys.readouterr().out == ""


def test_loading_the_label_name_model_draws_no_progress_bar_and_leaves_the_users_switch_as_it_was():
    """transformers draws a "Loading weights" bar on stderr while the label-name model loads (the semantic
    scorers'): a user of the Python API saw it under our lines. It is off for that load only."""
    code = ("from transformers.utils import logging\nfrom selkd_ray.models.text import text_model\n"
            "text_model()\nprint(logging.is_progress_bar_enabled())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading weights" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.split() == ["True"]  # the process-wide switch put back
