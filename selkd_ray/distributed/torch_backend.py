"""Ray Train's torch backend as our runs use it: a process group that needs no TCPStore where none is needed."""
from __future__ import annotations

import shutil
import tempfile

import ray
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _setup_torch_process_group, _TorchBackend


class SoloTorchBackend(_TorchBackend):
    """Ray Train's torch backend, with a process group that needs no TCPStore where none is needed.

    Why: torch's TCPStore (the default rendezvous of every process group) formats each peer's address with
    getnameinfo, a reverse DNS look-up, and 127.0.0.x is not in /etc/hosts as the v4-mapped address its
    dual-stack socket sees, so every run sent PTR queries to the machine's resolver (tests/test_no_network.py
    found them). A lone worker has no peers: no process group is made. Workers that all run on one node meet
    through a FileStore in a fresh local folder instead (no sockets, no look-ups). Workers on several nodes
    need the TCPStore, as Ray Train sets it up; their nodes' resolvers are then part of the cluster anyway."""

    def on_start(self, worker_group, backend_config) -> None:
        size = len(worker_group)
        if size == 1:
            return
        if len(set(worker_group.execute(node_id))) > 1:
            super().on_start(worker_group, backend_config)
            return
        self.store_dir = worker_group.execute_single(0, tempfile.mkdtemp, prefix="selkd-pg-")
        store = f"{self.store_dir}/store"
        worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(rank, _setup_torch_process_group, backend=backend_config.backend,
                                                   world_rank=rank, world_size=size, init_method=f"file://{store}",
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(size)])


    def on_shutdown(self, worker_group, backend_config) -> None:
        super().on_shutdown(worker_group, backend_config)
        if getattr(self, "store_dir", None):
            worker_group.execute_single(0, shutil.rmtree, self.store_dir, ignore_errors=True)


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


class LoopbackTorchConfig(TorchConfig):
    @property
    def backend_cls(self):
        return SoloTorchBackend
