# Copyright: sweep-fleet developers
# Apache License 2.0
"""The agents module, with the files' templates rendered and files read on the controller
as the files action does (see plugins/modules/agents.py)."""

from __future__ import annotations

from ansible_collections.sweep_fleet.wandb.plugins.action.files import ActionModule as FilesAction


class ActionModule(FilesAction):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(FilesAction, self).run(tmp, task_vars)
        args = dict(self._task.args)
        module_args = {
            **{k: v for k, v in args.items() if k not in ("directories", "files")},
            **self._files_args(args, task_vars),
        }
        result.update(
            self._execute_module(
                module_name="sweep_fleet.wandb.agents", module_args=module_args, task_vars=task_vars
            )
        )
        return result
