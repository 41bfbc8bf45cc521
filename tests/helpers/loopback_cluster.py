"""Start a real two-node Ray cluster on loopback addresses (head 127.0.0.3, worker 127.0.0.4), each node
declaring 2 CPU slots and 1 GPU it may not have (Ray lets a node declare GPUs): what Ray schedules there is what
it schedules on a cluster of two GPU nodes. `python loopback_cluster.py CPUS GPUS` sets the per-node counts.

Prints the head's address, then holds the cluster until stdin closes, and shuts down only its own processes
(never `ray stop`, which would take every Ray on the machine with it).
"""
import sys

from ray.cluster_utils import Cluster

HEAD_IP, WORKER_IP = "127.0.0.3", "127.0.0.4"
cpus, gpus = (int(v) for v in sys.argv[1:3]) if len(sys.argv) >= 3 else (2, 1)

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": gpus, "node_ip_address": HEAD_IP,
                                                        "include_dashboard": False})
cluster.add_node(num_cpus=cpus, num_gpus=gpus, node_ip_address=WORKER_IP)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
