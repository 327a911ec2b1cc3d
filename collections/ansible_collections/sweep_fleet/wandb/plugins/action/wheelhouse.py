# Copyright: sweep-fleet developers
# Apache License 2.0
"""Bring a host the wheels it installs, resolved and downloaded once on the controller.

See plugins/modules/wheelhouse.py for the options and plugins/plugin_utils/wheelhouse.py
for how a wheelhouse is made.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.pypi_index import redacted
from ansible_collections.sweep_fleet.wandb.plugins.plugin_utils.wheelhouse import (
    PROBE,
    IndexError_,
    Request,
    Target,
    WheelhouseError,
    build,
)

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def _windows(self) -> bool:
        return getattr(self._connection._shell, "SHELL_FAMILY", "") == "powershell"

    def _probe(self, python: str, task_vars: dict) -> dict:
        """System, architecture, Python version and libc of the host (one command, no module
        on POSIX hosts; ansible.windows.win_command on Windows, which quotes for PowerShell)."""
        interpreter = python
        if self._windows():
            check_mode, self._task.check_mode = self._task.check_mode, False  # it only reads
            try:
                result = self._execute_module(
                    "ansible.windows.win_command",
                    module_args={"argv": [python, "-c", PROBE]},
                    task_vars=task_vars,
                )
            finally:
                self._task.check_mode = check_mode
        else:
            if not os.path.isabs(python):  # a uv-managed version: the host's libc, the version given
                facts = task_vars.get("ansible_facts", {})
                interpreter = facts.get("discovered_interpreter_python", "python3")
            result = self._low_level_execute_command(
                f"{shlex.quote(interpreter)} -c {shlex.quote(PROBE)}", sudoable=False
            )
        if result.get("rc") != 0:
            raise AnsibleActionFail(
                f"cannot run {interpreter} on the host to learn its platform: "
                f"{(result.get('stderr') or result.get('msg') or result.get('stdout') or '').strip()[:300]}"
            )
        try:
            return json.loads(result["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError, KeyError) as err:
            raise AnsibleActionFail(f"{interpreter} on the host printed no platform: {err}") from err

    def _build(self, args: dict, task_vars: dict) -> tuple[Path, Target]:
        """The host's wheelhouse on the controller (made, or found in the cache)."""
        python = str(args.get("python") or "/usr/bin/python3")
        probe = self._probe(python, task_vars)
        try:
            # A path (on Windows hosts always one) is the Python; else a uv-managed version.
            managed = None if self._windows() or os.path.isabs(python) else python
            target = Target.from_probe(probe, managed)
            requirements = []
            for candidate in args.get("requirement_candidates") or []:
                if os.path.isfile(candidate):  # the first that exists, as the venv module does on the host
                    requirements.append(Path(candidate))
                    break
            request = Request(
                packages=list(args.get("packages") or []),
                constraints=list(args.get("constraints") or []),
                requirements=requirements,
                index_url=str(args.get("index_url") or "https://pypi.org/simple"),
                uv_version=str(args["uv_version"]),
                uv_sha256=dict(args.get("uv_sha256") or {}),
                system_certs=boolean(args.get("system_certs", True)),
                timeout=float(args.get("timeout") or 300),
                include_uv=boolean(args.get("include_uv", True)),
                nssm=(str(args["nssm_version"]), str(args.get("nssm_sha256") or ""))
                if args.get("nssm_version")
                else None,
            )
            cache = Path(os.path.expanduser(str(args.get("cache_dir") or "~/.cache/sweep-fleet/wheelhouse")))
            archive = build(request, target, cache, str(args.get("controller_uv") or ""), log=display.vv)
        except (WheelhouseError, IndexError_, OSError) as err:
            index = str(args.get("index_url") or "")
            message = str(err).replace(index, redacted(index)) if index else str(err)  # a token stays hidden
            raise AnsibleActionFail(f"wheelhouse: {message}") from err
        return archive, target

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        archive, target = self._build(args, task_vars)
        copy_task = self._task.copy()
        # On Windows the file takes the ACL of its directory (administrators and SYSTEM only).
        copy_task.args = {"src": str(archive), "dest": str(args["dest"])}
        if not self._windows():
            copy_task.args |= {"owner": "root", "group": "root", "mode": "0600"}
        copy = self._shared_loader_obj.action_loader.get(
            "ansible.windows.win_copy" if self._windows() else "ansible.legacy.copy",
            task=copy_task,
            connection=self._connection,
            play_context=self._play_context,
            loader=self._loader,
            templar=self._templar,
            shared_loader_obj=self._shared_loader_obj,
        )
        copied = copy.run(task_vars=task_vars)
        if copied.get("failed"):
            raise AnsibleActionFail(f"cannot copy the wheelhouse to {args['dest']}: {copied.get('msg')}")
        result.update(
            changed=bool(copied.get("changed")),
            archive=str(args["dest"]),
            platform=target.key,
            source=archive.name,
        )
        return result
