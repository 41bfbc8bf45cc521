"""Start a real one-node Ray cluster on a loopback address (127.0.0.5) that declares GPUs it may not have
(4 CPU slots, 2 GPUs by default; `python gpu_node_cluster.py CPUS GPUS`): what Ray schedules there is what it
schedules on a GPU node.

Prints the head's address, then holds the cluster until stdin closes, and shuts down only its own processes.
"""
import sys

from ray.cluster_utils import Cluster

HEAD_IP = "127.0.0.5"
cpus, gpus = (int(v) for v in sys.argv[1:3]) if len(sys.argv) >= 3 else (4, 2)

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": gpus, "node_ip_address": HEAD_IP,
                                                        "include_dashboard": False})
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
