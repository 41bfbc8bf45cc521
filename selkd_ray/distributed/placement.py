"""Placement groups of Ray Train runs on an embedded Ray: no cleaner actor per run; the driver cleans up.

Ray Train starts a detached PlacementGroupCleaner actor with every run, so that a controller that dies
ungracefully does not leave its placement group holding CPUs until the job ends (Ray removes a placement group
with its job, not with the actor that made it). Starting it holds up the run: 1.6 s of wall and 1.5 s of CPU per
run here (`bench`-style measurement in note 19). On a Ray this process started, the driver is that job and sees
every run end: it notes the live placement groups before its runs and removes any new one left when a run
fails (`removing_leftovers`). A cluster keeps Ray Train's cleaner: other drivers and nodes come and go there.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ray
from ray.util.placement_group import PlacementGroup, remove_placement_group


def live_placement_groups() -> set[str]:
    """Ids (hex) of the cluster's placement groups not removed yet."""
    return {pg_id for pg_id, info in ray.util.placement_group_table().items() if info.get("state") != "REMOVED"}


@contextlib.contextmanager
def removing_leftovers(enabled: bool) -> Iterator[None]:
    """Around a driver's Ray Train runs: when they end in an error (a controller killed, Ctrl-C), remove the
    placement groups made since, which a gracefully stopped run has already removed itself."""
    before = live_placement_groups() if enabled else set()
    try:
        yield
    except BaseException:
        if enabled:
            with contextlib.suppress(Exception):  # never hide the run's own error behind the clean-up's
                from ray._raylet import PlacementGroupID

                for pg_id in live_placement_groups() - before:
                    remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
        raise


def without_cleaner(callbacks: list) -> list:
    """Ray Train's default callbacks less the one that starts the PlacementGroupCleaner actor."""
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    return [callback for callback in callbacks if not isinstance(callback, PlacementGroupCleanerCallback)]
