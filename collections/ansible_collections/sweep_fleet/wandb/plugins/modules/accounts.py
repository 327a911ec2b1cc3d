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

import grp  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

MARK = "sweep-fleet"


class Accounts:
    def __init__(self, module: AnsibleModule):
        self.module = module
        self.changed: list[str] = []

    def run(self, *args: str) -> None:
        if self.module.check_mode:
            return
        rc, out, err = self.module.run_command(list(args))
        if rc != 0:
            self.module.fail_json(msg=f"{' '.join(args)} failed: {err.strip() or out.strip()}")

    def group(self, name: str) -> None:
        try:
            grp.getgrnam(name)
        except KeyError:
            self.changed.append(f"group {name}")
            self.run("groupadd", "--system", name)

    def user(self, spec: dict) -> None:
        name = spec["name"]
        self.group(spec["group"])
        for extra in spec["groups"]:
            self.group(extra)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            self.changed.append(f"user {name}")
            args = ["useradd", "--system", "--no-create-home", "--home-dir", spec["home"]]
            args += ["--shell", spec["shell"], "--gid", spec["group"], "--comment", spec["comment"]]
            if spec["groups"]:
                args += ["--groups", ",".join(spec["groups"])]
            self.run(*args, name)
            return
        args = []
        try:
            if entry.pw_gid != grp.getgrnam(spec["group"]).gr_gid:
                args += ["--gid", spec["group"]]
        except KeyError:  # check mode: the group is not there yet
            args += ["--gid", spec["group"]]
        for field, flag in (("home", "--home"), ("shell", "--shell"), ("comment", "--comment")):
            have = {"home": entry.pw_dir, "shell": entry.pw_shell, "comment": entry.pw_gecos}[field]
            if have != spec[field]:
                args += [flag, spec[field]]
        missing = []
        for extra in spec["groups"]:
            try:
                if name not in grp.getgrnam(extra).gr_mem:
                    missing.append(extra)
            except KeyError:
                missing.append(extra)
        if missing:
            args += ["--append", "--groups", ",".join(missing)]
        if args:
            self.changed.append(f"user {name}")
            self.run("usermod", *args, name)

    def prune(self, pattern: str, keep: set[str]) -> None:
        regex = re.compile(pattern)
        for entry in pwd.getpwall():
            if entry.pw_name in keep or not regex.fullmatch(entry.pw_name) or MARK not in entry.pw_gecos:
                continue
            self.changed.append(f"user {entry.pw_name}")
            self.run("userdel", entry.pw_name)
            try:
                own = grp.getgrnam(entry.pw_name)
            except KeyError:
                continue
            if own.gr_gid == entry.pw_gid:
                self.changed.append(f"group {entry.pw_name}")
                self.run("groupdel", entry.pw_name)

    def remove_group(self, name: str) -> None:
        try:
            grp.getgrnam(name)
        except KeyError:
            return
        self.changed.append(f"group {name}")
        self.run("groupdel", name)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "groups": {"type": "list", "elements": "str", "default": []},
            "users": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "group": {"type": "str", "required": True},
                    "groups": {"type": "list", "elements": "str", "default": []},
                    "comment": {"type": "str", "default": MARK},
                    "home": {"type": "str", "default": "/nonexistent"},
                    "shell": {"type": "str", "default": "/usr/sbin/nologin"},
                    "each": {"type": "list", "elements": "raw"},
                },
            },
            "prune": {"type": "str", "default": ""},
            "absent_groups": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    p = module.params
    accounts = Accounts(module)
    for name in p["groups"]:
        accounts.group(name)
    users = []
    for spec in p["users"]:
        for item in spec["each"] if spec["each"] is not None else [None]:
            users.append(
                spec
                if item is None
                else {k: v.replace("{item}", str(item)) if isinstance(v, str) else v for k, v in spec.items()}
            )
    for spec in users:
        accounts.user(spec)
    if p["prune"]:
        accounts.prune(p["prune"], {spec["name"] for spec in users})
    for name in p["absent_groups"]:
        accounts.remove_group(name)
    module.exit_json(changed=bool(accounts.changed), changed_accounts=accounts.changed)


if __name__ == "__main__":
    main()
