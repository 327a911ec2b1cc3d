# Copyright: sweep-fleet developers
# Apache License 2.0
"""host_state on Linux hosts; on Windows hosts (a PowerShell connection) the same facts from
ansible.windows.setup, and no record (see plugins/modules/host_state.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.sweep_fleet.wandb.plugins.modules.host_state import FACT_SUBSETS


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if getattr(self._connection._shell, "SHELL_FAMILY", "") != "powershell":
            result.update(
                self._execute_module("sweep_fleet.wandb.host_state", module_args=args, task_vars=task_vars)
            )
            return result
        if args.get("state", "read") != "read":
            result.update(changed=False, skipped=True, msg="Windows hosts keep no record")
            return result
        # The facts are read as the connecting user: Windows has no sudo (a Linux deploy reads
        # its record as root).
        self._connection.set_become_plugin(None)
        result.update(
            self._execute_module(
                "ansible.windows.setup", module_args={"gather_subset": FACT_SUBSETS}, task_vars=task_vars
            )
        )
        return result
