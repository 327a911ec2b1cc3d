#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: accounts
short_description: System users and groups of a role, converged in one step
description:
  - Makes the groups of O(groups) and the users of O(users) (system accounts without a
    home directory or a login shell), with their primary and supplementary groups, in one
    round trip, with C(groupadd), C(useradd) and C(usermod).
  - O(prune) removes the users whose name matches it and whose comment names sweep-fleet,
    but that O(users) does not list (with C(userdel)), and then their groups of the same
    name; O(absent_groups) are removed last.
  - Supports check mode.
version_added: "0.5.0"
options:
  groups:
    description: Groups to make.
    type: list
    elements: str
    default: []
  users:
    description: Users to make.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The user's name.
        type: str
        required: true
      group:
        description: Its primary group (made when missing).
        type: str
        required: true
      groups:
        description: Its supplementary groups (it is added to them; others are left).
        type: list
        elements: str
        default: []
      comment:
        description: The account's comment (GECOS).
        type: str
        default: sweep-fleet
      home:
        description: Its home directory, not made. The default exists nowhere.
        type: str
        default: /nonexistent
      shell:
        description: Its login shell.
        type: str
        default: /usr/sbin/nologin
      each:
        description:
          - One user per item of this list, with C({item}) in O(users[].name),
            O(users[].group) and O(users[].comment) replaced by the item.
        type: list
        elements: raw
  prune:
    description:
      - A regular expression. Users whose whole name matches it, that O(users) does not list
        and whose comment names sweep-fleet are removed.
    type: str
    default: ""
  absent_groups:
    description: Groups to remove (after the users).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Reports what would change and changes nothing.
    support: full
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: One account per agent, each in the group that may read the code
  sweep_fleet.wandb.accounts:
    groups: [wandb]
    users:
      - {name: "wandb-{item}", group: "wandb-{item}", groups: [wandb], each: [1, 2],
         comment: "W&B sweep agent {item} (sweep-fleet)"}
  become: true
"""

RETURN = r"""
changed_accounts:
  description: The users and groups made, changed or removed, as C(user NAME) or C(group NAME).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.accounts import ARGUMENT_SPEC, run  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
