"""Start a real two-node Ray cluster on loopback addresses (head 127.0.0.3, worker 127.0.0.4), one CPU each.

Prints the head's address, then holds the cluster until stdin closes, and shuts down only its own processes
(never `ray stop`, which would take every Ray on the machine with it).
"""
import sys

from ray.cluster_utils import Cluster

HEAD_IP, WORKER_IP = "127.0.0.3", "127.0.0.4"

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": HEAD_IP,
                                                        "include_dashboard": False})
cluster.add_node(num_cpus=1, node_ip_address=WORKER_IP)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
