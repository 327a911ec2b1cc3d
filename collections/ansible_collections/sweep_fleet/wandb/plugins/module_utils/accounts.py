# Copyright: sweep-fleet developers
# Apache License 2.0
"""The code of the accounts module (plugins/modules/accounts.py), shared with the role modules
that converge several steps in one call."""

from __future__ import annotations

import grp
import pwd
import re

from ansible.module_utils.basic import AnsibleModule

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


ARGUMENT_SPEC = {
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
}


def run(module: AnsibleModule) -> dict:
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
    return {"changed": bool(accounts.changed), "changed_accounts": accounts.changed}
