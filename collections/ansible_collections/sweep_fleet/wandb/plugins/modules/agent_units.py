#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent_units
short_description: The agent instances of a host, converged in one step
description:
  - Makes the host run exactly the C(wandb-agent@INSTANCE.service) units of O(instances),
    in one round trip. Instances beyond them are stopped, disabled and their environment
    files removed; the wanted ones are enabled (or not, O(enabled)) and started when
    O(start).
  - O(reload) reloads systemd first (the unit file changed). O(restart) names the
    instances to restart if they were already running (their settings changed); an
    instance started by this call is not restarted again.
  - O(follow) names the instances that move to a new sweep; a running one gets SIGHUP (its
    launcher takes no new run, lets the running one finish, then exits 75, and systemd starts
    it again on the new settings); nothing is preempted.
  - O(link) links the code's top-level entries into the working directory of every wanted
    instance, as root, on the directory's descriptor. What a run put in place of a code
    entry is moved aside and replaced by root's link (a run cannot replace root's links in
    its sticky directory, but an entry the code gains later may have been taken). With
    O(link.adopt_from), what that user (the agents' one shared account before 0.5.0) owns
    in a working directory is given to the instance's own user first, its agent stopped
    meanwhile.
  - Supports check mode.
version_added: "0.2.0"
options:
  instances:
    description: The wanted instances, e.g. V(["1", "2"]).
    type: list
    elements: str
    required: true
  enabled:
    description: Start the wanted instances at boot.
    type: bool
    default: true
  start:
    description: Start the wanted instances that are not running.
    type: bool
    default: true
  reload:
    description: Reload systemd's units first.
    type: bool
    default: false
  restart:
    description: Instances to restart if they were running before this call.
    type: list
    elements: str
    default: []
  follow:
    description: Instances to move to new settings after their running run, if they are running.
    type: list
    elements: str
    default: []
    version_added: "0.7.0"
  env_file:
    description: An instance's environment file, with C({instance}) for its name; removed with the instance.
    type: str
    default: /etc/sweep-fleet/agent-{instance}.env
  link:
    description:
      - Link the code into each instance's working directory. When empty, nothing is linked.
    type: dict
    default: {}
    suboptions:
      user:
        description: An instance's user, with C({instance}) for its name.
        type: str
      code:
        description: The code directory.
        type: path
      work:
        description: An instance's working directory, with C({instance}) for its name.
        type: str
      adopt_from:
        description: The user whose files in the working directories go to the instances' users.
        type: str
        default: ""
      venv:
        description:
          - The venv, linked into each working directory as C(.sweep-fleet-venv) (the sweep's
            default command runs C(.sweep-fleet-venv/bin/python)).
        type: path
attributes:
  check_mode:
    description: Reports what would change and changes nothing.
    support: full
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Run two agents
  sweep_fleet.wandb.agent_units:
    instances: ["1", "2"]
    restart: "{{ ['1', '2'] if settings_changed else [] }}"
  become: true
"""

RETURN = r"""
started:
  description: Instances started.
  type: list
  elements: str
  returned: always
followed:
  description: Running instances asked to move to the new settings after their running run.
  type: list
  elements: str
  returned: always
restarted:
  description: Instances restarted.
  type: list
  elements: str
  returned: always
stopped:
  description: Instances beyond the wanted ones, stopped and disabled.
  type: list
  elements: str
  returned: always
linked:
  description: Instances whose working directory got new links to the code.
  type: list
  elements: str
  returned: always
moved_aside:
  description: What runs had put in place of code entries, moved aside (C(INSTANCE/NAME)).
  type: list
  elements: str
  returned: always
adopted:
  description: Instances whose files of O(link.adopt_from) went to their own user.
  type: list
  elements: str
  returned: always
"""

import os  # noqa: E402
import pwd  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (  # noqa: E402
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "instances": {"type": "list", "elements": "str", "required": True},
            "enabled": {"type": "bool", "default": True},
            "start": {"type": "bool", "default": True},
            "reload": {"type": "bool", "default": False},
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
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
