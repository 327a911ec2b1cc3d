# Copyright: sweep-fleet developers
# Apache License 2.0
"""The code of the agent_units module (plugins/modules/agent_units.py), shared with the role modules
that converge several steps in one call."""

from __future__ import annotations

import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (
    RUNNING_STATES,
    UNIT_RE,
    VENV_LINK,
    adopt,
    agent_instances,
    link_code,
    unit_properties,
)


def unit(instance: str) -> str:
    return f"wandb-agent@{instance}.service"


class Systemd:
    def __init__(self, module: AnsibleModule):
        self.module = module

    def run(self, *args: str, check: bool = True) -> str:
        rc, out, err = self.module.run_command(["systemctl", *args])
        if check and rc != 0:
            self.module.fail_json(msg=f"systemctl {' '.join(args)} failed: {err.strip() or out.strip()}")
        return out

    def present(self) -> set[str]:
        """Instances systemd knows (loaded, or enabled at boot)."""
        return agent_instances(
            self.run("list-units", "--all", "--plain", "--no-legend", "--type=service", "wandb-agent@*")
        )

    def states(self, instances: list[str]) -> dict[str, tuple[str, str]]:
        """(ActiveState, UnitFileState) of each instance."""
        if not instances:
            return {}
        out = self.run("show", *(unit(i) for i in instances), "--property=Id,ActiveState,UnitFileState")
        states = {}
        for unit_id, props in unit_properties(out).items():
            match = UNIT_RE.match(unit_id)
            if match:
                states[match.group(1)] = (props.get("ActiveState", ""), props.get("UnitFileState", ""))
        return states


def run(module: AnsibleModule) -> dict:
    p = module.params
    systemd = Systemd(module)
    wanted = list(p["instances"])
    result = {
        "changed": False,
        "started": [],
        "restarted": [],
        "followed": [],
        "stopped": [],
        "linked": [],
        "moved_aside": [],
        "adopted": [],
    }
    if p["hold"]:
        return result
    if p["reload"]:
        result["changed"] = True
        if not module.check_mode:
            systemd.run("daemon-reload")
    extras = sorted(systemd.present() - set(wanted))
    if extras:
        result.update(changed=True, stopped=extras)
        if not module.check_mode:
            systemd.run("disable", "--now", *(unit(i) for i in extras))
            # One that had failed (its GPU gone, say) would stay listed as failed, and be found
            # again by the next run: forget that state too.
            systemd.run("reset-failed", *(unit(i) for i in extras), check=False)
            for instance in extras:
                path = p["env_file"].format(instance=instance)
                if os.path.exists(path):
                    os.unlink(path)
    if not os.path.exists("/etc/systemd/system/wandb-agent@.service") and module.check_mode:
        return {**result, "changed": True, "started": wanted if p["start"] else []}
    before = systemd.states(wanted)
    running = [i for i in wanted if before.get(i, ("", ""))[0] in RUNNING_STATES]
    enabled = [i for i in wanted if before.get(i, ("", ""))[1] == "enabled"]
    if p["enabled"] and len(enabled) < len(wanted):
        result["changed"] = True
        if not module.check_mode:
            systemd.run("enable", *(unit(i) for i in wanted if i not in enabled))
    if not p["enabled"] and enabled:
        result["changed"] = True
        if not module.check_mode:
            systemd.run("disable", *(unit(i) for i in enabled))
    link = p["link"] or {}
    if link.get("code") and not module.check_mode:
        for instance in wanted:
            if adopt_files(module, systemd, link, instance, instance in running):
                result["adopted"].append(instance)
                if instance in running:  # stopped for it: started again below
                    running.remove(instance)
            changed = link_work(module, link, instance)
            if any(change[0] in "+-" for change in changed):
                result["linked"].append(instance)
            result["moved_aside"] += [f"{instance}/{change[1:]}" for change in changed if change[0] == "!"]
        result["changed"] = result["changed"] or bool(result["linked"] or result["adopted"])
    restart = [i for i in running if i in p["restart"]]
    to_start = [i for i in wanted if i not in running] if p["start"] else []
    if (restart or to_start) and not module.check_mode:
        # A start asked for by the deploy is not a crash loop: clear systemd's start-rate
        # count (StartLimitBurst), which earlier restarts or deploys may have used up.
        systemd.run("reset-failed", *(unit(i) for i in restart + to_start), check=False)
    if restart:
        result.update(changed=True, restarted=restart)
        if not module.check_mode:
            systemd.run("restart", *(unit(i) for i in restart))
    follow = [i for i in running if i in p["follow"] and i not in restart]
    if follow:
        result.update(changed=True, followed=follow)
        if not module.check_mode:
            systemd.run("kill", "--kill-whom=main", "--signal=SIGHUP", *(unit(i) for i in follow))
    if to_start:
        result.update(changed=True, started=to_start)
        if not module.check_mode:
            systemd.run("start", *(unit(i) for i in to_start))
    return result


def _uid(name: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def adopt_files(module: AnsibleModule, systemd: Systemd, link: dict, instance: str, running: bool) -> bool:
    """Give the old shared user's files in the instance's working directory to its own user
    (its agent, if it still runs as the old user, is stopped first)."""
    old = _uid(link["adopt_from"]) if link.get("adopt_from") else None
    new = _uid(link["user"].format(instance=instance))
    work = link["work"].format(instance=instance)
    if old is None or new is None or old[0] == new[0]:
        return False
    try:
        owners = {entry.stat(follow_symlinks=False).st_uid for entry in os.scandir(work)}
    except OSError:
        return False
    if old[0] not in owners:
        return False
    if running:
        systemd.run("stop", unit(instance))
    try:
        adopt(work, old[0], *new)
    except OSError as err:
        module.fail_json(msg=f"giving agent {instance}'s files in {work} to its own user failed: {err}")
    return True


def link_work(module: AnsibleModule, link: dict, instance: str) -> list[str]:
    work = link["work"].format(instance=instance)
    user = _uid(link["user"].format(instance=instance)) if link.get("user") else None
    try:
        extra = {VENV_LINK: link["venv"]} if link.get("venv") else None
        return link_code(link["code"], work, uid=user[0] if user else -1, extra=extra)
    except OSError as err:
        module.fail_json(msg=f"linking the code into {work} (agent {instance}) failed: {err}")
    raise AssertionError  # fail_json does not return


ARGUMENT_SPEC = {
    "instances": {"type": "list", "elements": "str", "required": True},
    "enabled": {"type": "bool", "default": True},
    "start": {"type": "bool", "default": True},
    "reload": {"type": "bool", "default": False},
    "hold": {"type": "bool", "default": False},
    "restart": {"type": "list", "elements": "str", "default": []},
    "follow": {"type": "list", "elements": "str", "default": []},
    "env_file": {"type": "str", "default": "/etc/sweep-fleet/agent-{instance}.env"},
    "link": {
        "type": "dict",
        "default": {},
        "options": {
            "user": {"type": "str"},
            "code": {"type": "path"},
            "work": {"type": "str"},
            "adopt_from": {"type": "str", "default": ""},
            "venv": {"type": "path"},
        },
    },
}
