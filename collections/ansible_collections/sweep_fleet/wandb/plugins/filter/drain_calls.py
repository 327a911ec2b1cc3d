# Copyright: sweep-fleet developers
# Apache License 2.0
"""A drain's waits in calls to the host of at most a minute each: ``timeout | sweep_fleet.wandb.drain_calls``.
The rollout action and the wandb_agent role's stop both wait this way."""

from __future__ import annotations

import math

# The longest one call to the host waits (no SSH session held for the whole drain).
CALL_SECONDS = 60


def drain_calls(timeout) -> list[int]:
    """The waits of the drain's calls: ``timeout`` seconds in calls of at most CALL_SECONDS."""
    timeout = int(timeout)
    calls = max(math.ceil(timeout / CALL_SECONDS), 1)
    return [math.ceil(timeout / calls)] * calls


class FilterModule:
    def filters(self):
        return {"drain_calls": drain_calls}
