# Copyright: sweep-fleet developers
# Apache License 2.0
"""host_state on Linux hosts; on Windows hosts (a PowerShell connection) the same facts from
ansible.windows.setup, and no record (see plugins/modules/host_state.py)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.sweep_fleet.wandb.plugins.modules.host_state import (
    FACT_SUBSETS,
    WINDOWS_PYTHON_VERSION,
)


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
        if result.get("failed"):
            return result
        # The agents' Python and the GPUs, read in check mode too (whatever they answer is
        # for the preflight to judge).
        check_mode, self._task.check_mode = self._task.check_mode, False
        try:
            if args.get("windows_python"):
                result["windows_python"] = self._read(
                    [str(args["windows_python"]), "-c", WINDOWS_PYTHON_VERSION], task_vars
                )
            if args.get("gpus"):
                result["gpus"] = self._read(["nvidia-smi.exe", "-q", "-x"], task_vars)
        finally:
            self._task.check_mode = check_mode
        return result

    def _read(self, argv: list[str], task_vars: dict) -> dict:
        done = self._execute_module(
            "ansible.windows.win_command", module_args={"argv": argv}, task_vars=task_vars
        )
        return {key: done[key] for key in ("rc", "stdout", "stderr", "msg") if key in done}
