# Copyright: sweep-fleet developers
# Apache License 2.0
"""rollout: the drain and the switch in calls of the rollout module of at most a minute each
(one call when the agents end within it; see plugins/modules/rollout.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.sweep_fleet.wandb.plugins.filter.drain_calls import drain_calls


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        drain = args.get("mode", "drain") == "drain"
        waits = drain_calls(args.get("drain_timeout", 900)) if drain else [0]
        interrupted: list[dict] = []
        waited = 0.0
        for number, wait in enumerate(waits):
            call = {
                **args,
                "interrupt": drain and number == 0,
                "wait": wait,
                "final": number == len(waits) - 1,
            }
            done = self._execute_module(
                module_name="sweep_fleet.wandb.rollout", module_args=call, task_vars=task_vars
            )
            interrupted += done.pop("interrupted", [])
            waited += done.pop("drain_seconds", 0)
            if done.get("failed") or done.get("done"):
                break
        result.update(done)
        left = result.pop("left", [])
        left_ids = {run["id"] for run in left}
        result["drained"] = [run for unit in interrupted for run in unit["runs"] if run["id"] not in left_ids]
        result["preempted"] = left
        result["drain_seconds"] = round(waited, 2)
        result.pop("done", None)
        return result
