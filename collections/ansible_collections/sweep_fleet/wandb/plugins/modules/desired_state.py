#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0
# The work is done on the controller by the action plugin of the same name
# (plugins/action/desired_state.py); this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: desired_state
short_description: The digest of a host's desired state, against its record of the last deploy
description:
  - Works out, on the controller, one digest of everything a deploy of the host follows - the
    value of every role option for the host (the roles' defaults under the inventory's and
    C(-e)'s), the host's facts and GPU plan, the sweep and its state, this collection's code and
    templates, the playbook's C(templates) and C(files), and the controller's files the deploy
    copies (the code, the extra paths, uv).
  - The digest is keyed with the host's W&B API key (HMAC-SHA256), so it can be shown and
    stored while the secrets among its inputs (the key, a proxy's password) stay unguessable.
  - The host is converged when its record (read by M(sweep_fleet.wandb.host_state)) holds the
    same digest and nothing it lists has drifted. SLURM login nodes, Windows hosts, runs with
    C(--tags) or C(--skip-tags) and code from a git branch or tag (which can move at the remote)
    are never converged this way; they are deployed in full.
  - Runs on the controller only; no host is contacted.
version_added: "0.10.0"
options:
  recorded:
    description: The C(record) that M(sweep_fleet.wandb.host_state) returned for the host.
    type: dict
    default: {}
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Compare each host with its record of the last deploy
  sweep_fleet.wandb.desired_state:
    recorded: "{{ host.record | default({}) }}"
  register: desired

- name: End the hosts that are as deployed
  ansible.builtin.meta: end_host
  when: desired.converged
"""

RETURN = r"""
converged:
  description: Whether the host is as its last deploy left it, with the same desired state.
  type: bool
  returned: always
digest:
  description: The digest of the desired state (empty when the host is always deployed in full).
  type: str
  returned: always
drift:
  description: Why the host is deployed (empty when it is converged).
  type: list
  elements: str
  returned: always
parts:
  description:
    - The digests of parts of the desired state, kept in the record with the digest -
      C(venv), what shapes the venv, and C(settings), everything but the local code's files.
  type: dict
  returned: always
same:
  description:
    - The parts that are as the record holds them, on a host that has not drifted (never
      C(venv) for code from git, whose requirement files that part does not cover).
  type: list
  elements: str
  returned: always
"""
