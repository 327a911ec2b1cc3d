# Copyright: sweep-fleet developers
# Apache License 2.0
"""The runtime module's steps (see plugins/modules/runtime.py): the group, root's
directories, uv and the venv, each as the module of the same name does it."""

from __future__ import annotations

import hashlib
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import accounts, files, uv_binary, venv
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import fd_sha256
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.step import run_step

ARGUMENT_SPEC = {
    "group": {"type": "str"},
    "directories": {"type": "list", "elements": "path", "default": []},
    # Handled by the action plugin (the wheelhouse is made on the controller, uv read there).
    "wheelhouse": {"type": "dict"},
    "uv_copy": {
        "type": "dict",
        "options": {
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "default": "/usr/local/bin/uv"},
        },
    },
    "uv": {"type": "dict"},
    "send_first": {"type": "bool", "default": False},  # the action plugin's (it sends the files)
    # Files from the controller (the wheelhouse, uv): filled in by the action plugin.
    "copies": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "dest": {"type": "path", "required": True},
            "mode": {"type": "str", "required": True},
            "sha256": {"type": "str", "required": True},
            "staged": {"type": "path"},
        },
    },
    "venv": {"type": "dict"},
    # Handled by the action plugin (the files are read on the controller).
    "code_requirements": {"type": "list", "elements": "path"},
    # The code's requirements file, read on the controller: filled in by the action plugin.
    "requirement_files": venv.ARGUMENT_SPEC["requirement_files"],
    # uv's and the venv's environment (proxies, an index mirror): a top-level no_log option,
    # so a password in it never reaches the output or the host's journal.
    "environment": {"type": "dict", "default": {}, "no_log": True},
    # uv's own settings (PATH, UV_CACHE_DIR, ...): not secret, shown as they are.
    "settings": {"type": "dict", "default": {}},
}

_CHUNK = 1024 * 1024
_ROOT = 0  # the files' owner and group


def copy_file(module: AnsibleModule, p: dict) -> dict:
    """A file as the controller has it (root's, p["mode"]): compared by sha256; written from
    the staged file, checked again, only when it differs. ``needs_staged`` asks the action
    plugin to send the file."""
    mode = int(p["mode"], 8)
    dest = os.path.normpath(p["dest"])
    parent = files._parent(module, dest, create=True)
    if parent is None:
        return {"changed": True, "sha256": p["sha256"]}  # check mode: the directory is made first
    try:
        name = os.path.basename(dest)
        try:
            fd = os.open(name, os.O_RDONLY | files._NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            fd = None
        except OSError as err:
            module.fail_json(msg=f"{dest} exists and is not a regular file: {err.strerror}")
        if fd is not None:
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    module.fail_json(msg=f"{dest} exists and is not a regular file")
                if fd_sha256(fd) == p["sha256"]:
                    if not files._needs_meta(st, _ROOT, _ROOT, mode):
                        return {"changed": False, "sha256": p["sha256"]}
                    if not module.check_mode:
                        files._set_meta(fd, _ROOT, _ROOT, mode)
                    return {"changed": True, "sha256": p["sha256"]}
            finally:
                os.close(fd)
        if module.check_mode:
            return {"changed": True, "sha256": p["sha256"]}
        if not p.get("staged"):
            return {"changed": False, "needs_staged": True}
        _install_staged(module, p, parent, name, mode)
        return {"changed": True, "sha256": p["sha256"]}
    finally:
        os.close(parent)


def _install_staged(module: AnsibleModule, p: dict, parent: int, name: str, mode: int) -> None:
    try:
        source = os.open(p["staged"], os.O_RDONLY | files._NOFOLLOW)
    except OSError as err:
        module.fail_json(msg=f"{p['dest']}: the file sent to the host cannot be read: {err.strerror}")

    def copy(out: int) -> None:
        digest = hashlib.sha256()
        while chunk := os.read(source, _CHUNK):
            digest.update(chunk)
            os.write(out, chunk)
        if digest.hexdigest() != p["sha256"]:
            module.fail_json(
                msg=f"{p['dest']}: the file sent to the host has sha256 {digest.hexdigest()}, "
                f"not the controller's {p['sha256']}: not installed"
            )

    try:
        if not stat.S_ISREG(os.fstat(source).st_mode):
            module.fail_json(msg=f"{p['dest']}: the file sent to the host is not a regular file")
        files.replace(parent, name, copy, _ROOT, _ROOT, mode)
    finally:
        os.close(source)


def run(module: AnsibleModule) -> dict:
    p = module.params
    if p["wheelhouse"] or p["uv_copy"] or p["code_requirements"]:
        module.fail_json(
            msg="wheelhouse, uv_copy and code_requirements are handled by the action plugin: "
            "call sweep_fleet.wandb.runtime"
        )
    if p["requirement_files"] and p["venv"] is None:
        module.fail_json(msg="code_requirements are installed into the venv: give venv too")
    for item in p["requirement_files"]:
        venv.given_requirements(module, item)  # refused before anything changes
    for name in ("uv", "venv"):
        if p[name] and "environment" in p[name]:
            # Refused, and its values kept out of the refusal too.
            module.no_log_values.update(str(v) for v in (p[name]["environment"] or {}).values())
            module.fail_json(
                msg=f"{name}.environment: give environment at the top level (kept out of every log)"
            )
    environment = {**p["environment"], **p["settings"]}
    result: dict = {"changed_steps": []}
    # The controller's files are compared first: a host that needs one is sent it (the action
    # plugin calls again) before anything changes.
    copied = {}
    for item in p["copies"]:
        copied[item["dest"]] = copy_file(module, item)
    needs = [dest for dest, done in copied.items() if done.get("needs_staged")]
    if needs:
        return {"changed": False, "needs_staged": needs, "changed_steps": []}
    if copied:
        result["copies"] = copied
    steps = []
    if p["group"]:
        steps.append(("group", accounts.ARGUMENT_SPEC, {"groups": [p["group"]]}, accounts.run, None))
    if p["directories"]:
        directories = {
            "directories": [{"paths": p["directories"], "owner": "root", "group": "root", "mode": "0755"}]
        }
        steps.append(("directories", files.ARGUMENT_SPEC, directories, files.run, None))
    if p["uv"] is not None:
        uv = {**p["uv"], "environment": environment}
        steps.append(("uv", uv_binary.ARGUMENT_SPEC, uv, uv_binary.run, uv_binary.MUTUALLY_EXCLUSIVE))
    if p["venv"] is not None:
        steps.append(("venv", venv.ARGUMENT_SPEC, {**p["venv"], "environment": environment}, venv.run, None))
    if p["requirement_files"]:
        # A step of its own after the venv's packages, as the code role's would be: its
        # changes are not the venv's (those restart the agents; a code's new package does not).
        into = {
            name: p["venv"][name] for name in ("path", "uv", "constraints", "wheelhouse") if name in p["venv"]
        }
        into.update(requirement_files=p["requirement_files"], environment=environment)
        steps.append(("code_requirements", venv.ARGUMENT_SPEC, into, venv.run, None))
    public = frozenset(str(value) for value in p["settings"].values()) - set(module.no_log_values)
    for name, spec, args, code, mutually_exclusive in steps:
        result[name] = run_step(module, name, spec, args, code, mutually_exclusive, public)
    if any(done.get("changed") for done in copied.values()):
        result["changed_steps"].append("copies")
    for name in ("group", "directories", "uv", "venv", "code_requirements"):
        if result.get(name, {}).get("changed"):
            result["changed_steps"].append(name)
    result["changed"] = bool(result["changed_steps"])
    return result
