# Copyright: sweep-fleet developers
# Apache License 2.0
"""Each agent's GPUs from a host's ``nvidia-smi -q -x``: ``probe | sweep_fleet.wandb.gpu_plan(...)``."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.inputs import gpu_plan as plan_of


def gpu_plan(probe: dict, wanted, per_agent=1, when_none="fail") -> list:
    """The GPUs (index, uuid, bus_id, minor) of each agent; fails with the message that
    names the variable when the host cannot have them."""
    plan, problem = plan_of(
        wanted, int(per_agent or 1), str(when_none), probe if isinstance(probe, dict) else {}
    )
    if problem:
        raise AnsibleFilterError(problem)
    return plan


class FilterModule:
    def filters(self):
        return {"gpu_plan": gpu_plan}
