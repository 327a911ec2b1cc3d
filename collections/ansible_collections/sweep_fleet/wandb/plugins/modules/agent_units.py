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
  - O(link) links the code's entries into the working directory of each instance left
    running, as the service user (new code reaches the next run without a restart); an
    instance started or restarted here links them itself as it starts.
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
  env_file:
    description: An instance's environment file, with C({instance}) for its name; removed with the instance.
    type: str
    default: /etc/sweep-fleet/agent-{instance}.env
  link:
    description:
      - Link the code into each instance's working directory, as O(link.user), with the
        launcher's C(link) command. When empty, nothing is linked.
    type: dict
    default: {}
    suboptions:
      user:
        description: The service user.
        type: str
      python:
        description: The venv's Python.
        type: path
      launcher:
        description: The agent launcher.
        type: path
      code:
        description: The code directory.
        type: path
      work:
        description: An instance's working directory, with C({instance}) for its name.
        type: str
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
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (  # noqa: E402
    UNIT_RE,
    agent_instances,
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
        states, current = {}, {}
        for line in [*out.splitlines(), ""]:
            if not line.strip():
                match = UNIT_RE.match(current.get("Id", ""))
                if match:
                    states[match.group(1)] = (
                        current.get("ActiveState", ""),
                        current.get("UnitFileState", ""),
                    )
                current = {}
                continue
            key, _sep, value = line.partition("=")
            current[key] = value
        return states


def run(module: AnsibleModule) -> dict:
    p = module.params
    systemd = Systemd(module)
    wanted = list(p["instances"])
    result = {"changed": False, "started": [], "restarted": [], "stopped": [], "linked": []}
    if p["reload"]:
        result["changed"] = True
        if not module.check_mode:
            systemd.run("daemon-reload")
    extras = sorted(systemd.present() - set(wanted))
    if extras:
        result.update(changed=True, stopped=extras)
        if not module.check_mode:
            systemd.run("disable", "--now", *(unit(i) for i in extras))
            for instance in extras:
                path = p["env_file"].format(instance=instance)
                if os.path.exists(path):
                    os.unlink(path)
    if not os.path.exists("/etc/systemd/system/wandb-agent@.service") and module.check_mode:
        return {**result, "changed": True, "started": wanted if p["start"] else []}
    before = systemd.states(wanted)
    running = [i for i in wanted if before.get(i, ("", ""))[0] in ("active", "activating", "reloading")]
    enabled = [i for i in wanted if before.get(i, ("", ""))[1] == "enabled"]
    if p["enabled"] and len(enabled) < len(wanted):
        result["changed"] = True
        if not module.check_mode:
            systemd.run("enable", *(unit(i) for i in wanted if i not in enabled))
    if not p["enabled"] and enabled:
        result["changed"] = True
        if not module.check_mode:
            systemd.run("disable", *(unit(i) for i in enabled))
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
    if to_start:
        result.update(changed=True, started=to_start)
        if not module.check_mode:
            systemd.run("start", *(unit(i) for i in to_start))
    link = p["link"] or {}
    if link.get("launcher") and not module.check_mode and os.path.exists(link["launcher"]):
        # An agent links the code itself when it starts: only those left running need it.
        for instance in [i for i in running if i not in result["restarted"]]:
            command = [
                "runuser", "-u", link["user"], "--", link["python"], link["launcher"], "link",
                "--code", link["code"], "--work", link["work"].format(instance=instance),
            ]  # fmt: skip
            rc, out, err = module.run_command(command)
            if rc != 0:
                module.fail_json(msg=f"linking the code for agent {instance} failed: {err.strip()}")
            if out.strip() != "unchanged":
                result["linked"].append(instance)
        result["changed"] = result["changed"] or bool(result["linked"])
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "instances": {"type": "list", "elements": "str", "required": True},
            "enabled": {"type": "bool", "default": True},
            "start": {"type": "bool", "default": True},
            "reload": {"type": "bool", "default": False},
            "restart": {"type": "list", "elements": "str", "default": []},
            "env_file": {"type": "str", "default": "/etc/sweep-fleet/agent-{instance}.env"},
            "link": {
                "type": "dict",
                "default": {},
                "options": {
                    "user": {"type": "str"},
                    "python": {"type": "path"},
                    "launcher": {"type": "path"},
                    "code": {"type": "path"},
                    "work": {"type": "str"},
                },
            },
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
