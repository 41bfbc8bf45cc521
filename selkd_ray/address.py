"""A cluster address, checked before any work: the CLI's --address / RAY_ADDRESS (no Ray needed to check it)."""
from __future__ import annotations

import os
import socket

from .errors import SelkdError


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast, in one line, when nothing listens at host:port (ray.init would retry for a long time)."""
    if address in ("auto", "local") or address.startswith("anyscale://"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")  # Ray Client's address: its server's port
    if not host or not port.isdigit():
        raise SelkdError(f"--address: '{address}' is not host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise SelkdError(f"--address: no Ray cluster answers at {address} ({err.strerror or err})") from None


def check_address(address: str | None) -> None:
    """Where a command will join a cluster (--address, else RAY_ADDRESS), make sure something answers there
    before any output is touched; nothing to check for the embedded default."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
