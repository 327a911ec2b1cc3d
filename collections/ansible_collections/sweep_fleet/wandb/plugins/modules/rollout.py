#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollout
short_description: Switch a host's agents to an update staged while they ran
description:
  - The serial step of a staged rolling update (playbooks/update.yml) in one task per host,
    after the update was staged on every host at once while the agents ran (the credentials
    and the agents' files written, the units left as they were, the new code in
    O(code.staged)).
  - With O(mode=drain), first asks each running agent to take no new run and waits until
    they have ended, on the host, for at most O(drain_timeout) seconds (as
    M(sweep_fleet.wandb.agent_info) with C(interrupt) and C(wait_drained)); with
    O(mode=preempt) it does not wait.
  - Then, in the same call - stops the agents' units (a run still running is preempted)
    and waits until no process of the agents' users is left (it fails, changing nothing
    more, when one is); puts O(code.staged) in the place of O(code.dest) (the two names
    exchanged in one step where the kernel and the filesystem can, else two renames; both
    root's directories, acted on through their parent's descriptor) and removes the old
    code; reloads systemd (unless O(units) says C(reload=false)) and converges the units
    (O(units), as M(sweep_fleet.wandb.agent_units)); writes the host's record (as
    M(sweep_fleet.wandb.host_state) with V(present)).
  - This is an action plugin - a drain longer than a minute is waited for in several calls
    to the host (no SSH session held for the whole drain); one that ends within a minute
    costs one call.
  - Supports check mode (nothing is signalled, waited for or changed).
extends_documentation_fragment:
  - sweep_fleet.wandb.record
version_added: "0.11.0"
options:
  user:
    description: The agents' users are this name and a number.
    type: str
    required: true
  state_dir:
    description: The agents' state directory.
    type: path
    default: /var/lib/sweep-fleet
  env_file:
    description: The agents' sweep environment file.
    type: path
    default: /etc/sweep-fleet/sweep.env
  mode:
    description: V(drain) lets the running runs finish first; V(preempt) stops them.
    type: str
    choices: [drain, preempt]
    default: drain
  drain_timeout:
    description: Seconds a drain waits for the running runs before they are preempted.
    type: int
    default: 900
  interrupt:
    description: Set by the action plugin - ask the agents to take no new run first (the drain's first call).
    type: bool
    default: false
  wait:
    description: Set by the action plugin - seconds this call waits for the agents to end.
    type: int
    default: 0
  final:
    description: Set by the action plugin - the drain's last call, which switches whatever the agents do.
    type: bool
    default: true
  code:
    description: Where the code is and where its update was staged (a sibling directory).
    type: dict
    required: true
    suboptions:
      dest:
        description: The code's directory.
        type: path
        required: true
      staged:
        description: The staged code; nothing is put in place when it is missing.
        type: path
        required: true
  units:
    description: The agents' units, with the options of M(sweep_fleet.wandb.agent_units).
    type: dict
    required: true
  record:
    description: The path of the host's record, written at the end of the call.
    type: path
    required: true
attributes:
  check_mode:
    description: Reports the agents it would stop and whether code is staged; changes nothing.
    support: full
  diff_mode:
    description: Nothing to show.
    support: none
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Drain the agents and switch them to the staged update
  sweep_fleet.wandb.rollout:
    user: wandb-agent
    code: {dest: /opt/sweep-fleet/code, staged: /opt/sweep-fleet/.code.staged}
    units: {instances: ["1", "2"]}
    record: /var/lib/sweep-fleet/deployed.json
    digest: "{{ desired.digest }}"
    spec: {paths: [/opt/sweep-fleet/code]}
  become: true
"""

RETURN = r"""
drained:
  description: The runs that ended on their own during the drain (C(id), C(pid), C(params)).
  type: list
  elements: dict
  returned: always
preempted:
  description: The runs that were still running when the agents were stopped.
  type: list
  elements: dict
  returned: always
drain_seconds:
  description: How long the drain took, until the agents' units were stopped.
  type: float
  returned: always
stopped:
  description: The instances whose units were stopped.
  type: list
  elements: str
  returned: always
switched:
  description: Whether staged code was put in place.
  type: bool
  returned: always
units:
  description: What M(sweep_fleet.wandb.agent_units) returns (started, stopped, ...).
  type: dict
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.rollout import ARGUMENT_SPEC, run  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
