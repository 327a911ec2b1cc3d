#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: uv_binary
short_description: The uv binary at a pinned version, from a package index's uv wheel
description:
  - Installs C(uv) at O(dest) unless the binary there already reports O(version).
  - Looks the wheel for this host's architecture up in the package index's simple API
    (JSON form, PEP 691), or takes the wheel file O(wheel) or the wheel in the wheelhouse
    archive O(wheelhouse) already on the host, checks its
    sha256 against O(sha256), and writes the binary
    next to O(dest) before renaming it into place. The download stays in this module's
    memory, so no file that another user could create or change first is ever read.
  - O(environment) (proxies) reaches only this module's process, never a command line or
    Ansible's output.
  - Supports check mode.
version_added: "0.2.0"
options:
  version:
    description: The uv version, e.g. V(0.13.8).
    type: str
    required: true
  dest:
    description: Where the uv binary goes.
    type: path
    default: /usr/local/bin/uv
  index_url:
    description: The package index's simple API (it may carry a token, which is never shown).
    type: str
    default: https://pypi.org/simple
  wheel:
    description:
      - A uv wheel already on the host (for example pushed from the controller); the index is not asked.
    type: path
  wheelhouse:
    description:
      - A wheelhouse archive on the host (see M(sweep_fleet.wandb.wheelhouse)); the uv wheel
        for this host is taken from it and the index is not asked.
    type: path
  sha256:
    description:
      - The wheel's pinned sha256 for this host's architecture. Required, since a wheel is
        never trusted because the index lists a hash for it.
    type: str
    default: ""
  environment:
    description: Environment for the download (HTTPS_PROXY, NO_PROXY).
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the index.
    type: int
    default: 60
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Install uv from the package index
  sweep_fleet.wandb.uv_binary:
    version: "0.13.8"
  become: true
"""

RETURN = r"""
version:
  description: The uv version at O(dest) after the task.
  type: str
  returned: always
wheel:
  description: The wheel's file name, when one was installed.
  type: str
  returned: when changed
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.uv_binary import (  # noqa: E402
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
    run,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
