#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0
# The work is done on the controller by the action plugin of the same name
# (plugins/action/preflight.py); this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight
short_description: Check sweep-fleet's inputs and hosts on the controller, before any host changes
description:
  - With O(roles), checks every variable of those roles (or of a role's entry point, as
    C(wandb_agent:stop)) for the current host, with the roles' defaults under the host's own
    values; types and choices come from the roles' C(meta/argument_specs.yml), then sweep-fleet's
    own rules (names, paths, URLs, versions, the API key's shape, the rendered sweep config
    against W&B's schema, files that must exist on the controller).
  - With O(platform), checks from the gathered facts that the host can run the agents.
  - With O(report), run once, gathers what the other two registered on every host, checks
    the pinned versions against the package index, and fails with one short message per
    problem, naming the hosts a problem applies to when it does not apply to all.
  - Runs on the controller only; no host is contacted. Never shows a secret's value.
version_added: "0.2.0"
options:
  roles:
    description: The roles (or C(role:entry_point)) whose inputs to check.
    type: list
    elements: str
  require:
    description: Variables the playbook cannot do without (an empty value is a problem).
    type: list
    elements: str
    default: []
  platform:
    description:
      - Check the host's platform (needs its facts). With O(roles) naming the agent role (or
        its C(start) entry point), also that the agents' runs can resolve names (a resolver
        at a link-local address, which they may not reach, needs C(wandb_agent_ip_allow)).
    type: bool
    default: false
  sweep_command:
    description:
      - With O(platform), the sweep's run command (as the O(roles) check rendered it), checked
        against the host's operating system (a Windows host finds the base interpreter for a
        bare C(python); a Linux host cannot run a Windows path).
    type: list
    elements: str
  windows_python:
    description:
      - With O(platform), what a Windows host's Python at C(wandb_runtime_windows_python) printed
        for its version (the registered result of running it, with C(rc) and C(stdout)); one that
        does not run, or is outside the versions the agents can use, is a problem.
    type: dict
  gpu_probe:
    description:
      - With O(platform), the host's answer to C(nvidia-smi -q -x) (the registered result, with
        C(rc) and C(stdout)), for hosts whose agents use GPUs (C(wandb_agent_gpus)). A GPU the
        list names that the host does not have, or no GPU at all, is a problem; else each
        agent's GPUs become the host's fact C(wandb_agent_gpu_plan).
    type: dict
  collect:
    description: Return the problems instead of failing (for O(report) to gather them).
    type: bool
    default: false
  report:
    description: The name the per-host checks were registered as; fail once with every host's problems.
    type: str
attributes:
  check_mode:
    description: Works in check mode; it changes nothing in any mode.
    support: full
  action:
    description: An action plugin; it runs on the controller and contacts no host.
    support: full
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Check every input on the controller
  sweep_fleet.wandb.preflight:
    roles: [wandb_runtime, wandb_credentials, "wandb_agent:stop"]
    collect: true
  register: checked

- name: Stop if an input is wrong
  sweep_fleet.wandb.preflight:
    report: checked
  run_once: true
"""

RETURN = r"""
problems:
  description: One message per problem (empty when all is well).
  type: list
  elements: str
  returned: always
index_checks:
  description: Versions to look up in the package index (for O(report)).
  type: list
  elements: dict
  returned: when O(roles) is given
sweep_command:
  description: The rendered sweep config's run command (for the O(platform) check).
  type: list
  elements: str
  returned: when O(roles) renders a sweep config
gpus_wanted:
  description: Whether the host's agents use GPUs, so that its GPUs are read (O(platform) then checks them).
  type: bool
  returned: when O(roles) names the agent role
ansible_facts:
  description:
    - With O(platform), C(sweep_fleet_checked) (true - the roles then skip their own input
      check, the same one) and, with O(gpu_probe), C(wandb_agent_gpu_plan), each agent's
      GPUs (index, uuid, bus_id, minor).
  type: dict
  returned: with O(platform)
windows_python:
  description: The C(wandb_runtime_windows_python) a Windows host is asked for its version.
  type: str
  returned: when O(roles) names the runtime role
record:
  description: Where a deploy keeps the host's record of what it converged (M(sweep_fleet.wandb.host_state)).
  type: str
  returned: when O(roles) names the runtime, credentials, code and agent roles' main entry points
"""
