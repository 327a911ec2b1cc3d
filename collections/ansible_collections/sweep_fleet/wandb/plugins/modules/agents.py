#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agents
short_description: A host's agents in one call - their accounts, their files and their units
description:
  - Converges, in this order and in one call to the host, what the wandb_agent role sets
    up on a Linux host - the agents' accounts (O(accounts), as M(sweep_fleet.wandb.accounts)),
    their directories and files (as M(sweep_fleet.wandb.files), with the same options), and
    their units (O(units), as M(sweep_fleet.wandb.agent_units)); then, with O(record), the
    host's record of the deploy (deploy.yml's last change to the host, in the same call),
    whose O(spec) gets the paths of this call's directories and files added to its C(paths).
  - What the units step does follows from the files that changed in this call
    (O(restart_on)) - every running agent restarted when a file they all read changed, one
    agent when its own file changed, systemd reloaded when a file it reads changed, the
    running agents moved to the new sweep after their run when the sweep's file changed -
    on top of what O(units) asks for.
  - This is an action plugin (templates are rendered, and files read, on the controller as
    the files action does); the steps run in the module.
  - Supports check mode and C(--diff) (for files that are not secret).
version_added: "0.11.0"
extends_documentation_fragment:
  - sweep_fleet.wandb.files
  - sweep_fleet.wandb.record
options:
  accounts:
    description: The agents' groups and users, with the options of M(sweep_fleet.wandb.accounts).
    type: dict
    default: {}
  units:
    description: The agents' units, with the options of M(sweep_fleet.wandb.agent_units).
    type: dict
    required: true
  restart_on:
    description: What a changed file means for the units step.
    type: dict
    default: {}
    suboptions:
      all:
        description: Files every agent reads; a change restarts every running agent.
        type: list
        elements: str
        default: []
      own:
        description:
          - Regular expressions of one agent's own files, each with a group named C(instance);
            a change restarts that agent alone.
        type: list
        elements: str
        default: []
      reload:
        description: Regular expressions of files systemd reads; a change reloads systemd first.
        type: list
        elements: str
        default: []
      follow:
        description:
          - Files whose change alone moves the running agents to the new settings after their
            running run (the units step's C(follow) for every instance).
        type: list
        elements: str
        default: []
attributes:
  check_mode:
    description: Reports what would change and changes nothing.
    support: full
  diff_mode:
    description: Shows the changes of the files that are not secret.
    support: full
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Run two agents
  sweep_fleet.wandb.agents:
    accounts:
      users:
        - {name: "wandb-agent-{item}", group: "wandb-agent-{item}", groups: [wandb], each: ["1", "2"]}
    files:
      - {path: /etc/sweep-fleet/agent.env, template: agent.env.j2, mode: "0600", secret: true}
    units:
      instances: ["1", "2"]
    restart_on:
      all: [/etc/sweep-fleet/agent.env]
  become: true
"""

RETURN = r"""
changed_steps:
  description: The steps that changed something, of V(accounts), V(files) and V(units).
  type: list
  elements: str
  returned: always
changed_paths:
  description: The directories and files that were made, written or had their owner or mode set.
  type: list
  elements: str
  returned: always
paths:
  description: Every directory and file of the call (deploy.yml records them, see host_state).
  type: list
  elements: str
  returned: always
units:
  description: What M(sweep_fleet.wandb.agent_units) returns (started, restarted, followed, ...).
  type: dict
  returned: always
recorded:
  description: Whether the host's record was written (bookkeeping, not a change).
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agents import ARGUMENT_SPEC, run  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
