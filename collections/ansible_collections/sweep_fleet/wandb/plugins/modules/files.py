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
extends_documentation_fragment:
  - sweep_fleet.wandb.files
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
