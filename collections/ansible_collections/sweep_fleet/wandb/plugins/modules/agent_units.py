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
  hold:
    description:
      - Leave every unit as it is (a staged rolling update writes the agents' files while they
        run; M(sweep_fleet.wandb.rollout) converges the units once they are stopped).
    type: bool
    default: false
    version_added: "0.11.0"
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

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_units import ARGUMENT_SPEC, run  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
