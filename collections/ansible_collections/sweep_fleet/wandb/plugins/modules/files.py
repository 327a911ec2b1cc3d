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
"""

import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _ids(module: AnsibleModule, item: dict) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(item["owner"]).pw_uid
        gid = grp.getgrnam(item["group"]).gr_gid
    except KeyError as err:
        if module.check_mode:  # a user the same run would have created
            return -1, -1
        module.fail_json(msg=f"{item['path']}: no such user or group: {err}")
        raise
    return uid, gid


def _mode(module: AnsibleModule, item: dict) -> int:
    try:
        return int(str(item["mode"]), 8)
    except ValueError:
        module.fail_json(msg=f"{item['path']}: mode {item['mode']!r} is not an octal number such as '0640'")
        raise


def _needs_meta(path: str, uid: int, gid: int, mode: int) -> bool:
    st = os.lstat(path)
    return (
        (uid != -1 and st.st_uid != uid)
        or (gid != -1 and st.st_gid != gid)
        or stat.S_IMODE(st.st_mode) != mode
    )


def converge_directory(module: AnsibleModule, item: dict) -> bool:
    path = item["path"]
    uid, gid = _ids(module, item)
    mode = _mode(module, item)
    if os.path.isdir(path) and not os.path.islink(path):
        if not _needs_meta(path, uid, gid, mode):
            return False
    elif os.path.lexists(path):
        module.fail_json(msg=f"{path} exists and is not a directory")
    if not module.check_mode:
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return True


def converge_file(module: AnsibleModule, item: dict, diffs: list | None) -> bool:
    path = item["path"]
    uid, gid = _ids(module, item)
    mode = _mode(module, item)
    content = (item.get("content") or "").encode()
    before = None
    if os.path.lexists(path):
        if os.path.islink(path) or not os.path.isfile(path):
            module.fail_json(msg=f"{path} exists and is not a regular file")
        with open(path, "rb") as handle:
            before = handle.read()
    if before == content and not _needs_meta(path, uid, gid, mode):
        return False
    if diffs is not None and before != content:
        diffs.append(
            {
                "before_header": path,
                "after_header": path,
                "before": before.decode(errors="replace") if before is not None else "",
                "after": content.decode(errors="replace"),
            }
        )
    if module.check_mode:
        return True
    if before == content:
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return True
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=".sweep-fleet-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())  # whole on disk before the rename: a crash leaves old or new
        os.chown(temp, uid, gid)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return True


def main() -> None:
    meta = {
        "owner": {"type": "str", "default": "root"},
        "group": {"type": "str", "default": "root"},
    }
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path"},
                    "paths": {"type": "list", "elements": "path"},
                    "mode": {"type": "raw", "default": "0755"},
                    **meta,
                },
                "required_one_of": [["path", "paths"]],
                "mutually_exclusive": [["path", "paths"]],
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "mode": {"type": "raw", "default": "0644"},
                    "template": {"type": "str"},
                    "src": {"type": "str"},
                    "content": {"type": "str", "default": ""},
                    "secret": {"type": "bool", "default": False},
                    "each": {"type": "list", "elements": "raw"},
                    "vars": {"type": "dict", "default": {}},
                    **meta,
                },
                "mutually_exclusive": [["template", "src"]],
            },
            "private_files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "mode": {"type": "raw", "default": "0600"},
                    "content": {"type": "str", "default": "", "no_log": True},
                    **meta,
                },
            },
        },
        supports_check_mode=True,
    )
    for item in module.params["files"]:
        if item["template"] or item["src"] or item["each"] or item["secret"]:
            module.fail_json(
                msg=f"{item['path']}: template, src, each and secret are handled by the action "
                "plugin; call the module through it (sweep_fleet.wandb.files)"
            )
    changed = []
    diffs = [] if module._diff else None
    for item in module.params["directories"]:
        for path in item["paths"] or [item["path"]]:
            if converge_directory(module, {**item, "path": path}):
                changed.append(path)
    for item in module.params["files"]:
        if converge_file(module, item, diffs):
            changed.append(item["path"])
    for item in module.params["private_files"]:
        if converge_file(module, item, None):
            changed.append(item["path"])
    result = {"changed": bool(changed), "changed_paths": changed}
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
