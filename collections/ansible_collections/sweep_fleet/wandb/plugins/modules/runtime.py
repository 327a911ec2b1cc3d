#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runtime
short_description: The agents' runtime on a Linux host in one call - group, directories, uv and the venv
description:
  - Converges, in this order and in one call to the host, what the wandb_runtime role
    installs - the agents' group (as M(sweep_fleet.wandb.accounts)), root's directories
    (as M(sweep_fleet.wandb.files)), the uv binary (from the package index or the
    wheelhouse as M(sweep_fleet.wandb.uv_binary), or copied from the controller) and the
    venv with its packages (as M(sweep_fleet.wandb.venv)). Each step takes that module's
    options, checked against its argument spec, and behaves as it does.
  - The files from the controller (the wheelhouse of O(wheelhouse), root-only; uv of
    O(uv_copy), mode 0755) are compared by sha256 first; only a host whose copy differs is
    sent them (one more call), checked against the controller's sha256 again on the host,
    read through a descriptor opened without following links, and renamed into place as
    root's. Nothing changes on the host before they are there. With O(send_first), they are
    sent with the first call instead (one call).
  - This is an action plugin (the wheelhouse is made, and uv read, on the controller); the
    steps run in the module, as one call to the host.
  - Supports check mode (nothing is sent). C(--diff) is not supported (nothing here is text).
version_added: "0.11.0"
options:
  group:
    description: The group of the agents' accounts (made when missing).
    type: str
  directories:
    description: Directories made as root's, mode 0755 (the runtime and state directories).
    type: list
    elements: path
    default: []
  wheelhouse:
    description:
      - The wheels the host installs from, with the options of M(sweep_fleet.wandb.wheelhouse)
        - resolved and downloaded once on the controller for each host platform, sent to a
        host only when its copy differs. O(uv) and O(venv) name it as their C(wheelhouse).
    type: dict
  uv:
    description:
      - Install uv from the package index or the wheelhouse, with the options of
        M(sweep_fleet.wandb.uv_binary) but O(environment) (see below).
    type: dict
  uv_copy:
    description:
      - Copy uv from the controller instead of O(uv).
    type: dict
    suboptions:
      src:
        description: The uv binary on the controller.
        type: path
        required: true
      dest:
        description: Where it goes on the host.
        type: path
        default: /usr/local/bin/uv
  venv:
    description: The venv and its packages, with the options of M(sweep_fleet.wandb.venv) but O(environment).
    type: dict
  code_requirements:
    description:
      - Requirements files on the controller (a local code's C(requirements.txt) or
        C(pyproject.toml)), of which the first that exists is read there and installed into
        the venv of O(venv) in a step of its own after its packages (with its C(uv),
        C(constraints) and C(wheelhouse)), as M(sweep_fleet.wandb.venv) installs a file on the
        host; what it changes is reported apart from the venv's packages (RV(code_requirements)).
      - It saves the code role a call to the host of its own. The file is refused on the
        controller when it is a link, not a regular file or larger than 4 MiB, and on the host
        when it asks for more than packages from the index.
    type: list
    elements: path
  environment:
    description:
      - The environment of uv in the O(uv) and O(venv) steps (HTTPS_PROXY, NO_PROXY,
        UV_DEFAULT_INDEX, ...). It reaches uv only through this module's own process, never
        a command line, Ansible's output or the host's journal (a proxy password stays hidden).
    type: dict
    default: {}
  settings:
    description:
      - More environment for uv in those steps that is not secret (PATH, UV_CACHE_DIR,
        UV_SYSTEM_CERTS, ...); it wins over O(environment) and is shown as it is.
    type: dict
    default: {}
  send_first:
    description:
      - Send the files from the controller with the first call, without asking the host
        whether its copies differ (that costs a call) - for a host likely to lack them, such
        as one with no record of a deploy. The host still compares each file by sha256 and
        keeps its own copy where it is the same; only the bytes sent are wasted then.
      - Ignored in check mode (nothing is sent).
    type: bool
    default: false
  copies:
    description:
      - Set by the action plugin from O(wheelhouse) and O(uv_copy) - the files from the
        controller, each compared by sha256 and written from the file sent (O(copies[].staged)).
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: The file on the host.
        type: path
        required: true
      mode:
        description: Its mode (root owns it).
        type: str
        required: true
      sha256:
        description: The controller's file's sha256.
        type: str
        required: true
      staged:
        description: Where the action plugin sent the file.
        type: path
extends_documentation_fragment:
  - sweep_fleet.wandb.requirement_files
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Make the venv with the pinned wandb (and the group, the directories and uv first)
  sweep_fleet.wandb.runtime:
    group: wandb-agents
    directories: [/opt/sweep-fleet, /var/lib/sweep-fleet]
    wheelhouse: {dest: /opt/sweep-fleet/wheelhouse.tar, packages: [wandb==0.31.0], uv_version: "0.13.8"}
    uv: {version: "0.13.8", sha256: "{{ uv_sha256 }}", wheelhouse: /opt/sweep-fleet/wheelhouse.tar}
    venv:
      path: /opt/sweep-fleet/venv
      python: /usr/bin/python3
      packages: [wandb==0.31.0]
      wheelhouse: /opt/sweep-fleet/wheelhouse.tar
  become: true
"""

RETURN = r"""
changed_steps:
  description:
    - The steps that changed something, of V(copies), V(group), V(directories), V(uv), V(venv)
      and V(code_requirements).
  type: list
  elements: str
  returned: always
venv:
  description: What M(sweep_fleet.wandb.venv) returns (created, installed, removed, ...).
  type: dict
  returned: when O(venv) is given
code_requirements:
  description:
    - What M(sweep_fleet.wandb.venv) returns for the code's requirements (its C(requirements)
      names the file on the controller).
  type: dict
  returned: when a file of O(code_requirements) exists
uv:
  description: The uv step's result (its C(version), or C(sha256) for a copy).
  type: dict
  returned: when O(uv) or O(uv_copy) is given
sent:
  description: The files sent to the host (their paths there), when any was.
  type: list
  elements: str
  returned: when a file was sent
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.runtime import ARGUMENT_SPEC, run  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC, mutually_exclusive=[["uv", "uv_copy"]], supports_check_mode=True
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
