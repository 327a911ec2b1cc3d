#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: files
short_description: Directories and files of a role, converged on a host in one step
description:
  - Makes the directories of O(directories) and writes the files of O(files), each with
    its owner, group and mode, in one round trip. A file is written (next to its place,
    then renamed over it) only when its content differs; owner and mode are set when they
    differ. Reports which paths changed.
  - Every path is reached from C(/) one component at a time without following a link
    that anyone but root could have made, and owner and mode are set on the open
    descriptor. A directory or file swapped for a link meanwhile is refused, never followed.
  - The action plugin of the same name renders O(files[].template) and reads
    O(files[].src) on the controller, as M(ansible.builtin.template) and
    M(ansible.builtin.copy) do, and passes the content on.
  - A file marked O(files[].secret) is written like the others but its content never
    appears in the output, in C(--diff) or in the module's arguments as Ansible logs them.
  - Supports check mode and C(--diff) (for files that are not secret).
version_added: "0.2.0"
options:
  directories:
    description: Directories to make.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory. Give O(directories[].path) or O(directories[].paths).
        type: path
      paths:
        description: Several directories with the same owner, group and mode.
        type: list
        elements: path
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Mode, as an octal string such as V("0750").
        type: raw
        default: "0755"
      each:
        description:
          - One directory per item of this list, with C({item}) in O(directories[].path),
            O(directories[].owner) and O(directories[].group) replaced by the item (the
            action plugin expands it).
        type: list
        elements: raw
  files:
    description: Files to write.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file. With O(files[].each), C({item}) in it is replaced by the item.
        type: path
        required: true
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Mode, as an octal string such as V("0640").
        type: raw
        default: "0644"
      template:
        description: A template of the role, rendered on the controller.
        type: str
      src:
        description: A file of the role, read on the controller.
        type: str
      content:
        description: The content itself.
        type: str
        default: ""
      secret:
        description: Keep the content out of every output, C(--diff) included.
        type: bool
        default: false
      each:
        description: Write the file once per item of this list, with C(item) set in the template.
        type: list
        elements: raw
      vars:
        description: Further variables for the template.
        type: dict
        default: {}
  private_files:
    description: Filled by the action plugin with the files marked secret; not for direct use.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Mode.
        type: raw
        default: "0600"
      content:
        description: The content.
        type: str
        default: ""
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
- name: Write the key and the connection settings
  sweep_fleet.wandb.files:
    directories:
      - {path: /etc/sweep-fleet, owner: root, group: root, mode: "0700"}
    files:
      - path: /etc/sweep-fleet/netrc
        template: netrc.j2
        owner: root
        group: root
        mode: "0600"
        secret: true
      - {path: /etc/sweep-fleet/wandb.env, template: wandb.env.j2, owner: root, group: root, mode: "0600"}
  become: true
"""

RETURN = r"""
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
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.files import ARGUMENT_SPEC, run  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
