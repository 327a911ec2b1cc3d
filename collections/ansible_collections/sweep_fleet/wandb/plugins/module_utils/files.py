# Copyright: sweep-fleet developers
# Apache License 2.0
"""The code of the files module (plugins/modules/files.py), shared with the role modules
that converge several steps in one call."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import secrets
import stat
from collections.abc import Callable

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (
    UnsafePath,
    open_dir,
)

# A file root reads back to compare: larger than this is written again rather than read.
COMPARE_LIMIT = 16 * 1024 * 1024
_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


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


def _needs_meta(st: os.stat_result, uid: int, gid: int, mode: int) -> bool:
    return (
        (uid != -1 and st.st_uid != uid)
        or (gid != -1 and st.st_gid != gid)
        or stat.S_IMODE(st.st_mode) != mode
    )


def _set_meta(fd: int, uid: int, gid: int, mode: int) -> None:
    """Owner, then mode (a chown clears set-id bits), on the open descriptor itself."""
    os.fchown(fd, uid, gid)
    os.fchmod(fd, mode)


def _parent(module: AnsibleModule, path: str, create: bool) -> int | None:
    """The parent directory's descriptor (None in check mode when it does not exist yet)."""
    try:
        return open_dir(os.path.dirname(path) or "/", create=create and not module.check_mode)
    except FileNotFoundError:
        if module.check_mode:
            return None
        module.fail_json(msg=f"{path}: its directory does not exist")
    except UnsafePath as err:
        module.fail_json(msg=f"{path}: refused: {err.filename} on the way is {err.strerror}")
    except NotADirectoryError:
        module.fail_json(msg=f"{path}: a part of the path is not a directory")
    raise AssertionError  # fail_json does not return


def converge_directory(module: AnsibleModule, item: dict) -> bool:
    """Make the directory (its parents too) and set its owner and mode, on its descriptor:
    a directory swapped for a link meanwhile is refused, never followed."""
    path = os.path.normpath(item["path"])
    uid, gid = _ids(module, item)
    mode = _mode(module, item)
    parent = _parent(module, path, create=True)
    if parent is None:
        return True
    name = os.path.basename(path)
    made = False
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            if module.check_mode:
                return True
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=parent)
                made = True
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.ENOTDIR, errno.ELOOP):
                module.fail_json(msg=f"{path} exists and is not a directory")
            raise
        try:
            if not made and not _needs_meta(os.fstat(fd), uid, gid, mode):
                return False
            if not module.check_mode:
                _set_meta(fd, uid, gid, mode)
            return True
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def _read_existing(
    module: AnsibleModule, parent: int, path: str
) -> tuple[bytes | None, os.stat_result | None]:
    name = os.path.basename(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        return None, None
    except OSError as err:
        if err.errno == errno.ELOOP:
            module.fail_json(msg=f"{path} exists and is not a regular file")
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            module.fail_json(msg=f"{path} exists and is not a regular file")
        if st.st_size > COMPARE_LIMIT:
            return b"", st  # compared as different: written again
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def converge_file(module: AnsibleModule, item: dict, diffs: list | None) -> bool:
    path = os.path.normpath(item["path"])
    uid, gid = _ids(module, item)
    mode = _mode(module, item)
    content = (item.get("content") or "").encode()
    parent = _parent(module, path, create=False)
    if parent is None:  # check mode: the directory is made by the same run
        before, st = None, None
    else:
        before, st = _read_existing(module, parent, path)
    try:
        if st is not None and before == content and not _needs_meta(st, uid, gid, mode):
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
        name = os.path.basename(path)
        if before == content:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=parent)
            try:
                if os.fstat(fd).st_ino == st.st_ino:
                    _set_meta(fd, uid, gid, mode)
                    return True
            finally:
                os.close(fd)

        def write(fd: int) -> None:
            with os.fdopen(fd, "wb", closefd=False) as handle:
                handle.write(content)

        replace(parent, name, write, uid, gid, mode)
        return True
    finally:
        if parent is not None:
            os.close(parent)


def replace(parent: int, name: str, write: Callable[[int], None], uid: int, gid: int, mode: int) -> None:
    """Put a new file at ``name`` in the directory open as ``parent``: written by ``write`` (its
    descriptor) next to its place under a name no one can guess, given its owner and mode,
    synced, then renamed over it, so that a reader or a crash sees the old file or the whole
    new one. On any failure (a fail_json in ``write`` too) the temporary file is removed."""
    temp = f".sweep-fleet-{secrets.token_hex(8)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=parent)
    try:
        try:
            write(fd)
            _set_meta(fd, uid, gid, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=parent)
        raise


_META = {
    "owner": {"type": "str", "default": "root"},
    "group": {"type": "str", "default": "root"},
}
ARGUMENT_SPEC = {
    "directories": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "path"},
            "paths": {"type": "list", "elements": "path"},
            "mode": {"type": "raw", "default": "0755"},
            "each": {"type": "list", "elements": "raw"},
            **_META,
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
            **_META,
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
            **_META,
        },
    },
}


def run(module: AnsibleModule) -> dict:
    for item in module.params["files"]:
        if item["template"] or item["src"] or item["each"] or item["secret"]:
            module.fail_json(
                msg=f"{item['path']}: template, src, each and secret are handled by the action "
                "plugin; call the module through it (sweep_fleet.wandb.files)"
            )
    changed, paths = [], []
    diffs = [] if module._diff else None
    for item in module.params["directories"]:
        for path in item["paths"] or [item["path"]]:
            paths.append(path)
            if converge_directory(module, {**item, "path": path}):
                changed.append(path)
    for item in module.params["files"]:
        paths.append(item["path"])
        if converge_file(module, item, diffs):
            changed.append(item["path"])
    for item in module.params["private_files"]:
        paths.append(item["path"])
        if converge_file(module, item, None):
            changed.append(item["path"])
    result = {"changed": bool(changed), "changed_paths": changed, "paths": paths}
    if diffs:
        result["diff"] = diffs
    return result
