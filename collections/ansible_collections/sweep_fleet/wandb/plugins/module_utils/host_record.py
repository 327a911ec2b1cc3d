# Copyright: sweep-fleet developers
# Apache License 2.0
"""The host's record of what the last deploy converged, and its check against the host.

deploy.yml ends a host after one question when nothing changed: the controller's digest of
the desired state against the digest this record holds, and everything the record lists
(files, directory trees, accounts, units) as the record saw it. A file changed or removed
by hand, a stopped agent or a deleted account is drift, and the host is deployed again.

The record is root's (``0600``, in a directory only root can change) and is read without
following a link and only when it is a regular file below a size limit. Paths are reached
with ``agent_host.open_dir``: no link someone other than root could have made is followed.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess

from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (
    RUNNING_STATES,
    UnsafePath,
    fd_sha256,
    open_dir,
    unit_properties,
)

RECORD_LIMIT = 4 * 1024 * 1024
# Files up to this size are compared by content; larger ones by size and modification time.
CONTENT_LIMIT = 1024 * 1024
# A tree with more entries than this is not recorded (always deployed).
TREE_LIMIT = 200_000
# Python writes these next to the sources it imports: not part of what is deployed.
TREE_SKIP = {"__pycache__"}
_NOFOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _parent(path: str) -> tuple[int, str]:
    """The open parent directory of ``path`` and its last component."""
    path = os.path.normpath(path)
    return open_dir(os.path.dirname(path) or "/"), os.path.basename(path)


def _file_seen(dir_fd: int, name: str, st: os.stat_result, content: bool) -> str:
    head = f"{stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid}"
    if stat.S_ISDIR(st.st_mode):
        return f"d {head}"
    if stat.S_ISLNK(st.st_mode):
        return f"l {head} {os.readlink(name, dir_fd=dir_fd)}"
    if not stat.S_ISREG(st.st_mode):
        return f"o {head} {stat.S_IFMT(st.st_mode)}"
    if not content or st.st_size > CONTENT_LIMIT:
        return f"f {head} {st.st_size} {st.st_mtime_ns}"
    fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            return f"f {head} replaced"
        return f"f {head} {st.st_size} {fd_sha256(fd)}"
    finally:
        os.close(fd)


def path_seen(path: str) -> str:
    """What ``path`` is: type, mode, owner and content (a hash), or ``missing``."""
    try:
        dir_fd, name = _parent(path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except UnsafePath:
        return "unsafe"
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return _file_seen(dir_fd, name, st, content=True)
    except FileNotFoundError:
        return "missing"
    finally:
        os.close(dir_fd)


def _venv_descends(rel: str) -> bool:
    """Whether a venv's walk enters the directory ``rel`` (``/lib/python3.12``): bin/, the
    lib/ path to site-packages and each installed distribution's ``.dist-info``."""
    parts = rel.split("/")[1:]
    if len(parts) == 1:
        return parts[0] in ("bin", "lib")
    if parts[0] != "lib":
        return False
    if len(parts) == 2:
        return parts[1].startswith("python")
    if parts[2] != "site-packages":
        return False
    return len(parts) == 3 or (len(parts) == 4 and parts[3].endswith(".dist-info"))


def _venv_content(rel: str) -> bool:
    """A venv's files read for their content: site-packages' own (``.pth``) and the
    installed distributions' metadata (RECORD lists each installed file's hash)."""
    parts = rel.split("/")[1:]
    return len(parts) >= 3 and parts[0] == "lib" and parts[2] == "site-packages"


def tree_seen(path: str, content: bool, packages: bool = False) -> str:
    """One hash of every entry below ``path`` (names, types, modes, owners and, with
    ``content``, the files' content; else their sizes and modification times).

    With ``packages``, ``path`` is a venv seen as its installer sees it: its top level,
    bin/, site-packages' entries and every installed distribution's metadata (by content),
    not the files of the packages themselves (what ``uv pip install`` neither reads nor
    repairs), so that a venv of thousands of files costs a few hundred reads."""
    try:
        top = open_dir(os.path.normpath(path))
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except UnsafePath:
        return "unsafe"
    digest = hashlib.sha256()
    count = 0
    stack = [("", top)]
    try:
        while stack:
            rel, fd = stack.pop()
            try:
                names = sorted(os.listdir(fd))
                for name in names:
                    if name in TREE_SKIP:
                        continue
                    count += 1
                    if count > TREE_LIMIT:
                        return "too large"
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    reads = _venv_content(rel) if packages else content
                    line = f"{rel}/{name}\t{_file_seen(fd, name, st, reads)}\n"
                    digest.update(line.encode("utf-8", "surrogateescape"))
                    if stat.S_ISDIR(st.st_mode) and (not packages or _venv_descends(f"{rel}/{name}")):
                        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                        stack.append((f"{rel}/{name}", child))
            finally:
                os.close(fd)
    except OSError as err:
        return f"unreadable {errno.errorcode.get(err.errno, err.errno)}"
    finally:
        for _rel, fd in stack:
            os.close(fd)
    return f"t {count} {digest.hexdigest()}"


def units_seen(names: list[str]) -> dict[str, str]:
    """Each unit's ``enabled running`` as two words (``yes``/``no``)."""
    if not names:
        return {}
    proc = subprocess.run(
        ["systemctl", "show", "--property=Id,UnitFileState,ActiveState", "--", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    shown = unit_properties(proc.stdout) if proc.returncode == 0 else {}
    seen = dict.fromkeys(names, "unknown")
    for name in names:
        if name in shown:
            enabled = "yes" if shown[name].get("UnitFileState") in ("enabled", "enabled-runtime") else "no"
            running = "yes" if shown[name].get("ActiveState") in RUNNING_STATES else "no"
            seen[name] = f"{enabled} {running}"
    return seen


def observe(spec: dict, units: dict[str, str] | None = None) -> dict[str, str]:
    """What the host has now of everything ``spec`` lists. ``spec["units"]`` maps each unit
    to the state it is meant to be in (``enabled running``, e.g. ``yes yes``); ``units``
    takes those instead of reading them (when the record is written)."""
    seen: dict[str, str] = {}
    for path in spec.get("paths") or []:
        seen[f"path {path}"] = path_seen(path)
    for tree in spec.get("trees") or []:
        seen[f"tree {tree['path']}"] = tree_seen(
            tree["path"], bool(tree.get("content")), packages=bool(tree.get("packages"))
        )
    for name in spec.get("users") or []:
        try:
            entry = pwd.getpwnam(name)
            seen[f"user {name}"] = f"{entry.pw_uid} {entry.pw_gid}"
        except KeyError:
            seen[f"user {name}"] = "missing"
    for name in spec.get("groups") or []:
        try:
            seen[f"group {name}"] = str(grp.getgrnam(name).gr_gid)
        except KeyError:
            seen[f"group {name}"] = "missing"
    wanted = spec.get("units") or {}
    if units is None:
        units = units_seen(sorted(wanted))
    for name in sorted(wanted):
        seen[f"unit {name}"] = units.get(name, "unknown")
    return seen


def read(path: str) -> dict | None:
    """The record at ``path``, or None when there is none or it is not root's own regular
    file (0600, in a directory only root can change) of at most RECORD_LIMIT bytes."""
    try:
        dir_fd, name = _parent(path)
    except (FileNotFoundError, NotADirectoryError, UnsafePath):
        return None
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077 or st.st_size > RECORD_LIMIT:
            return None
        data = os.read(fd, RECORD_LIMIT + 1)
    finally:
        os.close(fd)
    try:
        record = json.loads(data)
    except ValueError:
        return None
    ok = (
        isinstance(record, dict)
        and isinstance(record.get("digest"), str)
        and isinstance(record.get("spec"), dict)
        and isinstance(record.get("seen"), dict)
        and isinstance(record.get("parts", {}), dict)
        and all(isinstance(v, str) for v in record.get("parts", {}).values())
    )
    return record if ok else None


def verify(path: str) -> dict:
    """The record's digest (and its parts' digests) and what on the host differs from what it
    lists (``drift``: the first few differences). No record: ``found`` is false."""
    record = read(path)
    if record is None:
        return {"found": False, "digest": "", "drift": ["no record of a deploy"]}
    now = observe(record["spec"])
    drift = [key for key in sorted(set(now) | set(record["seen"])) if now.get(key) != record["seen"].get(key)]
    found = {"found": True, "digest": record["digest"], "drift": drift[:10]}
    return {**found, "parts": record["parts"]} if record.get("parts") else found


# The options of a module that writes the record at the end of its own call (rollout,
# agents), as host_state writes it with state=present; documented by the doc fragment
# sweep_fleet.wandb.record.
WRITE_ARGUMENT_SPEC = {
    "record": {"type": "path"},
    "digest": {"type": "str", "default": ""},
    "parts": {"type": "dict", "default": {}},
    "spec": {"type": "dict", "default": {}},
    "keep_spec": {"type": "bool", "default": False},
}


def write_given(p: dict) -> bool:
    """The record as a module's WRITE_ARGUMENT_SPEC options give it; whether one was written.
    None without a path or a digest (a host deployed in full every time: code from a git
    branch, say); with ``keep_spec`` (only the code's content changed) it lists what the
    record lists now (see write)."""
    if not p["record"] or not p["digest"]:
        return False
    return write(p["record"], p["digest"], None if p["keep_spec"] else p["spec"], p["parts"])


def write(path: str, digest: str, spec: dict | None, parts: dict | None = None) -> bool:
    """Write the record (root's, 0600) in one step: a new file, then renamed over the old;
    whether it was written. ``parts``: the digests of parts of the desired state (see
    plugins/action/desired_state.py). ``spec`` None: what the record lists now (a deploy
    that changed nothing it lists but the code's content); with no record to keep, none is
    written, and the next run deploys the host in full."""
    if spec is None:
        kept = read(path)
        if kept is None:
            return False
        spec = kept["spec"]
    units = {name: str(want) for name, want in (spec.get("units") or {}).items()}
    data = json.dumps(
        {"digest": digest, "parts": dict(parts or {}), "spec": spec, "seen": observe(spec, units=units)},
        sort_keys=True,
    )
    dir_fd, name = _parent(path)
    try:
        st = os.fstat(dir_fd)
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafePath(errno.EPERM, "a directory others can change", os.path.dirname(path))
        temp = f".{name}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    return True


def remove(path: str) -> bool:
    """Remove the record; whether there was one."""
    try:
        dir_fd, name = _parent(path)
    except (FileNotFoundError, NotADirectoryError, UnsafePath):
        return False
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dir_fd)
