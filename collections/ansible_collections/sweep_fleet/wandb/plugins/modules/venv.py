#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: venv
short_description: A Python venv made and filled by uv, in one step
description:
  - Creates the venv at O(path) with uv when it is missing or was made from another
    interpreter, installs a uv-managed Python first when O(python) is a version, then
    installs O(packages) and the O(requirements) files, under O(constraints).
  - Reports a change only when a package was added, removed or replaced.
  - Installs wheels only (C(--no-build)), so no package's build code runs as root. A
    requirements file must be a regular file (not a link), and may list only packages from
    the index (no options, URLs, paths or editables; see module_utils/requirements.py); a
    file with hashes is installed with C(--require-hashes).
  - O(environment) (proxies, a package index mirror) reaches uv only through this module's
    own process, never a command line or Ansible's output, so a proxy password stays hidden.
  - Supports check mode (uv's dry run).
version_added: "0.2.0"
options:
  path:
    description: The venv's directory.
    type: path
    required: true
  python:
    description:
      - The interpreter the venv is made from, as a path (the host's Python), or a version
        such as V(3.12), which uv installs first (C(uv python install)).
      - When not given, the venv must exist already; it is only filled.
    type: str
  uv:
    description: The uv binary.
    type: path
    default: /usr/local/bin/uv
  packages:
    description: Requirement specifiers to install, e.g. V(wandb==0.31.0).
    type: list
    elements: str
    default: []
  requirements:
    description: Requirements files on the host (C(requirements.txt), C(pyproject.toml)) to install.
    type: list
    elements: path
    default: []
  requirement_candidates:
    description: Requirements files of which the first one that exists is installed (none may exist).
    type: list
    elements: path
    default: []
  constraints:
    description: Requirement specifiers nothing installed may contradict, e.g. V(wandb==0.31.0).
    type: list
    elements: str
    default: []
  environment:
    description: Environment for uv (HTTPS_PROXY, NO_PROXY, UV_DEFAULT_INDEX, UV_CACHE_DIR, ...).
    type: dict
    default: {}
  wheelhouse:
    description:
      - A wheelhouse archive on the host (see M(sweep_fleet.wandb.wheelhouse)). uv installs
        from its wheels only, with no index access (C(--no-index)). When empty, uv installs
        from the index.
    type: path
extends_documentation_fragment:
  - sweep_fleet.wandb.requirement_files
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: A venv with a pinned wandb
  sweep_fleet.wandb.venv:
    path: /opt/sweep-fleet/venv
    python: /usr/bin/python3
    packages: [wandb==0.31.0]
    constraints: [wandb==0.31.0]
    environment:
      HTTPS_PROXY: "{{ proxy_with_password }}"
  become: true
"""

RETURN = r"""
requirements:
  description: The requirements files installed.
  type: list
  elements: str
  returned: always
created:
  description: Whether the venv was created (or made again from another interpreter).
  type: bool
  returned: always
installed:
  description: Packages added or replaced, as C(name==version).
  type: list
  elements: str
  returned: always
removed:
  description: Packages removed or replaced, as C(name==version).
  type: list
  elements: str
  returned: always
python_version:
  description: The venv's Python version.
  type: str
  returned: when the venv exists
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.venv import ARGUMENT_SPEC, run  # noqa: E402


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
