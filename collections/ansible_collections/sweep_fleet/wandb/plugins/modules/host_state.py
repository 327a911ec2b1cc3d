#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_state
short_description: One question to a host - its platform, its GPUs and its record of the last deploy
description:
  - With O(state=read) (every playbook's preflight), reads in one call what the playbooks need
    to know of a host - the facts the roles read, named as C(setup) names them (system,
    machine, architecture, kernel, distribution, distribution_version, os_family, service_mgr
    and dns), with O(gpus) the report of C(nvidia-smi -q -x), and with O(record) the record of
    the last deploy, checked against the host.
  - The record lists what the deploy converged (files, directory trees, accounts, the agents'
    units and the state each unit was left in). Each is read again as it is now; what differs
    is returned in RV(record). The controller compares its digest of the desired state
    with the record's; when both agree and nothing drifted, the host is as deployed.
  - With O(state=present) (the end of a deploy), writes the record; with O(state=absent)
    removes it. The record is root's own file (mode 0600) in a directory only root can change,
    written in one step and read without following a link, as a regular file of at most 4 MiB.
  - On Windows hosts the action plugin gathers the same facts with C(ansible.windows.setup);
    Windows hosts keep no record (they are deployed every time).
version_added: "0.10.0"
options:
  state:
    description: Read the host (V(read)), write the record (V(present)) or remove it (V(absent)).
    type: str
    choices: [read, present, absent]
    default: read
  gpus:
    description: With O(state=read), also run C(nvidia-smi -q -x) and return its report as RV(gpus).
    type: bool
    default: false
  commands:
    description:
      - With O(state=read), the commands to look for on the host (its C(PATH)); the fact
        C(sweep_fleet_commands) maps each to its path, or to an empty string when missing.
    type: list
    elements: str
    default: []
    version_added: "0.11.0"
  slurm:
    description:
      - With O(state=read), read what a SLURM login node needs (the login user's id and
        where SLURM's commands are) and return it as RV(slurm_probe).
    type: bool
    default: false
    version_added: "0.11.0"
  windows_python:
    description:
      - Windows hosts, with O(state=read) - the Python the agents run with, asked for its
        version (RV(windows_python)). Not used on Linux hosts.
    type: str
    default: ""
    version_added: "0.11.0"
  record:
    description: The record's path. Empty reads no record.
    type: str
    default: ""
  digest:
    description: With O(state=present), the controller's digest of the desired state (a keyed hash).
    type: str
    default: ""
  parts:
    description:
      - With O(state=present), the digests of parts of the desired state (by name, such as
        C(venv)), for the controller to tell which part of a host differs.
    type: dict
    default: {}
    version_added: "0.11.0"
  spec:
    description:
      - With O(state=present), what the record lists, as C(paths) (files and directories),
        C(trees) (a list of C(path) and C(content), directories compared entry by entry, files by
        content when C(content) is true, else by size and time; with C(packages) true, a venv as
        its installer sees it, bin/ and each installed distribution's metadata by content, not
        the packages' own files), C(users), C(groups), and
        C(units) (each unit's wanted state as two words, enabled and running, such as V(yes yes)).
    type: dict
    default: {}
  keep_spec:
    description:
      - With O(state=present), list what the host's record lists now instead of O(spec) - for
        a deploy that changed nothing on the host but the code's content. Without a readable
        record, no record is written (the next run deploys the host in full).
    type: bool
    default: false
    version_added: "0.11.0"
notes:
  - Supports check mode; with O(state=present) or O(state=absent) it then changes nothing.
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Read the host and its record
  sweep_fleet.wandb.host_state:
    gpus: true
    record: /var/lib/sweep-fleet/deploy-record.json
  become: true
  register: host
"""

RETURN = r"""
ansible_facts:
  description:
    - The facts the roles read (see the description), and C(sweep_fleet_commands) (see O(commands)).
      Windows hosts - those of C(ansible.windows.setup) for the subsets platform, distribution,
      service_mgr and dns.
  returned: state is read
  type: dict
slurm_probe:
  description:
    - The login user's id, then for each of sbatch, squeue, scancel and scontrol its path or
      C(missing NAME), one per line in its C(stdout) (C(rc) 0).
  returned: state is read and slurm is true
  type: dict
windows_python:
  description: Windows hosts - C(win_command)'s result for the Python's version (rc, stdout).
  returned: state is read, on Windows hosts, and windows_python is given
  type: dict
gpus:
  description: C(nvidia-smi -q -x)'s exit status (127 when it is not installed) and output.
  returned: state is read and gpus is true
  type: dict
record:
  description: The record of the last deploy, checked against the host.
  returned: state is read and record is given
  type: dict
  contains:
    found:
      description: Whether there is a record (one root could not have written counts as none).
      type: bool
    digest:
      description: The digest of the desired state the record holds.
      type: str
    parts:
      description: The digests of parts of the desired state the record holds, when it holds any.
      type: dict
      returned: when the record holds any
    drift:
      description: The first ten things that differ from the record, such as V(path /etc/sweep-fleet/netrc).
      type: list
      elements: str
"""

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import host_facts, host_record  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (  # noqa: E402
    NVIDIA_SMI_LIMIT,
)

# Windows hosts: the subsets of ansible.windows.setup (plugins/action/host_state.py).
FACT_SUBSETS = ["!all", "!min", "platform", "distribution", "service_mgr", "dns"]
# What a login node submits the agents with.
SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "scontrol")
# Asked of a Windows host's Python (see plugins/action/host_state.py).
WINDOWS_PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


def gpus(module: AnsibleModule) -> dict:
    """nvidia-smi's XML report, as the preflight's GPU check reads it."""
    path = module.get_bin_path("nvidia-smi")
    if not path:
        return {"rc": 127, "stdout": "", "stderr": "nvidia-smi: not found"}
    try:
        proc = subprocess.run(
            [path, "-q", "-x"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"rc": 1, "stdout": "", "stderr": str(err)}
    return {"rc": proc.returncode, "stdout": proc.stdout[:NVIDIA_SMI_LIMIT], "stderr": proc.stderr[-2000:]}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["read", "present", "absent"], "default": "read"},
            "gpus": {"type": "bool", "default": False},
            "commands": {"type": "list", "elements": "str", "default": []},
            "slurm": {"type": "bool", "default": False},
            "windows_python": {"type": "str", "default": ""},
            "record": {"type": "str", "default": ""},
            "digest": {"type": "str", "default": ""},
            "parts": {"type": "dict", "default": {}},
            "spec": {"type": "dict", "default": {}},
            "keep_spec": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    path = params["record"]
    if path and not os.path.isabs(path):
        module.fail_json(msg=f"record: {path!r} is not an absolute path")
    if params["state"] == "read":
        result: dict = {"changed": False, "ansible_facts": host_facts.facts()}
        result["ansible_facts"]["sweep_fleet_commands"] = {
            name: shutil.which(name) or "" for name in params["commands"]
        }
        if params["gpus"]:
            result["gpus"] = gpus(module)
        if params["slurm"]:
            lines = [str(os.getuid())] + [shutil.which(name) or f"missing {name}" for name in SLURM_COMMANDS]
            result["slurm_probe"] = {"rc": 0, "stdout": "\n".join(lines)}
        if path:
            result["record"] = host_record.verify(path)
        module.exit_json(**result)
    if not path:
        module.fail_json(msg="record: the record's path is needed to write or remove it")
    if params["state"] == "absent":
        found = os.path.lexists(path)
        if found and not module.check_mode:
            host_record.remove(path)
        module.exit_json(changed=found)
    if not params["digest"]:
        module.fail_json(msg="digest: the digest of the desired state is needed to write the record")
    if not module.check_mode:
        try:
            spec = None if params["keep_spec"] else params["spec"]
            host_record.write(path, params["digest"], spec, params["parts"])
        except OSError as err:
            module.fail_json(msg=f"cannot write the record {path}: {err}")
    module.exit_json(changed=True)


if __name__ == "__main__":
    main()
