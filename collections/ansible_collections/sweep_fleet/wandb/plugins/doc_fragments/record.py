# Copyright: sweep-fleet developers
# Apache License 2.0
"""The record of the last deploy, written by a module at the end of its own call (rollout,
agents) as host_state writes it with state=present (module_utils/host_record.py's
WRITE_ARGUMENT_SPEC)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  record:
    description:
      - The path of the host's record, written at the end of the call, after every other
        step succeeded (as M(sweep_fleet.wandb.host_state) writes it with V(present)); none
        is written without it, or in check mode.
    type: path
  digest:
    description:
      - The digest of the desired state, for the record; empty writes no record (a host that
        is deployed in full every time).
    type: str
    default: ""
  parts:
    description:
      - The digests of parts of the desired state, for the record (as the C(parts) of
        M(sweep_fleet.wandb.host_state)).
    type: dict
    default: {}
  spec:
    description: What the record lists, as the C(spec) of M(sweep_fleet.wandb.host_state).
    type: dict
    default: {}
  keep_spec:
    description:
      - List what the host's record lists now instead of O(spec) - for a deploy that changed
        nothing on the host but the code's content. Without a readable record, no record is
        written (the next run deploys the host in full).
    type: bool
    default: false
"""
