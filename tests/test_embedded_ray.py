"""An embedded Ray started beside another Ray on the same machine (a second command, a cluster node, the suite's
own Ray) takes no port the other may hold."""
import contextlib
import os
import socket
import subprocess
import sys

RAY_AGENT_PORT = 52365  # Ray's fixed default for the dashboard agent's HTTP server

DRIVER = """
import ray
from selkd_ray.distributed.runtime import connect
connect(num_cpus=1)
print("agent port", ray.nodes()[0]["DashboardAgentListenPort"])
"""


def test_an_embedded_rays_agent_serves_on_a_free_port_while_ray_s_default_is_taken():
    """Ray's own default is held (by this test, as another Ray on the machine would hold it): the new Ray's
    dashboard agent serves HTTP on a port the system picked. With Ray's default it retried the taken port for
    3.4 s before the node could register, then ran without HTTP (its port recorded as -1)."""
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken by some other Ray: held all the same
            holder.bind(("127.0.0.1", RAY_AGENT_PORT))
            holder.listen()
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        done = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    port = int(done.stdout.split("agent port")[-1])
    assert port not in (RAY_AGENT_PORT, -1, 0), done.stdout
