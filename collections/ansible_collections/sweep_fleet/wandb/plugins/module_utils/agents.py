# Copyright: sweep-fleet developers
# Apache License 2.0
"""The agents module's steps (see plugins/modules/agents.py): the accounts, the files, then
the units, restarted as the files that changed ask, then the host's record."""

from __future__ import annotations

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import (
    accounts,
    agent_units,
    files,
    host_record,
)
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.step import run_step

ARGUMENT_SPEC = {
    "accounts": {"type": "dict", "default": {}},
    **files.ARGUMENT_SPEC,
    "units": {"type": "dict", "required": True},
    "restart_on": {
        "type": "dict",
        "default": {},
        "options": {
            "all": {"type": "list", "elements": "str", "default": []},
            "own": {"type": "list", "elements": "str", "default": []},
            "reload": {"type": "list", "elements": "str", "default": []},
            "follow": {"type": "list", "elements": "str", "default": []},
        },
    },
    **host_record.WRITE_ARGUMENT_SPEC,
}


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def unit_args(units: dict, rules: dict, changed: list[str]) -> dict:
    """The units step's arguments, with what the files that changed ask for: every agent
    restarted (a file all read), one agent restarted (its own file), systemd reloaded (a file
    it reads), the running agents moved to new settings after their run (the sweep)."""
    args = dict(units)
    instances = [str(i) for i in units.get("instances") or []]
    if any(re.search(pattern, path) for pattern in rules["reload"] for path in changed):
        args["reload"] = True
    if not args.get("start", True):
        return args  # nothing runs: nothing to restart or move
    restart = [str(i) for i in args.get("restart") or []]
    if set(changed) & set(rules["all"]):
        restart = instances
    for pattern in rules["own"]:
        for path in changed:
            match = re.fullmatch(pattern, path)
            if match and match.group("instance") in instances:
                restart.append(match.group("instance"))
    args["restart"] = _unique(restart)
    follow = [str(i) for i in args.get("follow") or []]
    if set(changed) & set(rules["follow"]):
        follow = instances
    args["follow"] = _unique(follow)
    return args


def run(module: AnsibleModule) -> dict:
    p = module.params
    for pattern in p["restart_on"]["own"]:
        try:
            if "instance" not in re.compile(pattern).groupindex:
                module.fail_json(msg=f"restart_on.own: {pattern!r} has no group named instance")
        except re.error as err:
            module.fail_json(msg=f"restart_on.own: {pattern!r} is not a regular expression: {err}")
    result: dict = {"changed_steps": []}
    if p["accounts"]:
        result["accounts"] = run_step(module, "accounts", accounts.ARGUMENT_SPEC, p["accounts"], accounts.run)
    written = files.run(module)
    if "diff" in written:
        result["diff"] = written.pop("diff")
    result["files"] = {"changed": written["changed"]}
    result["paths"], result["changed_paths"] = written["paths"], written["changed_paths"]
    args = unit_args(p["units"], p["restart_on"], written["changed_paths"])
    result["units"] = run_step(module, "units", agent_units.ARGUMENT_SPEC, args, agent_units.run)
    for name in ("accounts", "files", "units"):
        if result.get(name, {}).get("changed"):
            result["changed_steps"].append(name)
    result["changed"] = bool(result["changed_steps"])
    result["recorded"] = False
    if not module.check_mode:
        given = dict(p)
        if p["spec"]:  # the record lists this call's directories and files too
            paths = _unique([*(p["spec"].get("paths") or []), *result["paths"]])
            given["spec"] = {**p["spec"], "paths": paths}
        try:
            result["recorded"] = host_record.write_given(given)
        except OSError as err:
            module.fail_json(msg=f"cannot write the record {p['record']}: {err}")
    return result
