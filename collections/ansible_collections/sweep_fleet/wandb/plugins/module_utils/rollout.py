# Copyright: sweep-fleet developers
# Apache License 2.0
"""The rollout module's steps (see plugins/modules/rollout.py): a host whose update was staged
while its agents ran, switched to it once they are stopped - the agents stopped, the staged
code put in place of the code, the units started, the record written."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import agent_runs, agent_units, host_record
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (
    UnsafePath,
    agent_users,
    open_dir,
    pids,
)
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.step import run_step

# renameat2(2): swap two names in one step.
RENAME_EXCHANGE = 2
# How long the agents' users' processes may take to end once their units are stopped.
STRAY_WAIT = 20

ARGUMENT_SPEC = {
    "user": {"type": "str", "required": True},
    "state_dir": {"type": "path", "default": "/var/lib/sweep-fleet"},
    "env_file": {"type": "path", "default": "/etc/sweep-fleet/sweep.env"},
    # The action plugin's (plugins/action/rollout.py), which splits the drain into calls.
    "mode": {"type": "str", "choices": ["drain", "preempt"], "default": "drain"},
    "drain_timeout": {"type": "int", "default": 900},
    # One call of the drain: ask the agents to take no new run first, wait this long, and
    # whether this is the last call (the switch follows whatever the agents are doing).
    "interrupt": {"type": "bool", "default": False},
    "wait": {"type": "int", "default": 0},
    "final": {"type": "bool", "default": True},
    "code": {
        "type": "dict",
        "required": True,
        "options": {"dest": {"type": "path", "required": True}, "staged": {"type": "path", "required": True}},
    },
    "units": {"type": "dict", "required": True},
    **host_record.WRITE_ARGUMENT_SPEC,
    "record": {"type": "path", "required": True},
}


def _exchange(dir_fd: int, a: str, b: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "no renameat2 in the C library")
    if renameat2(dir_fd, a.encode(), dir_fd, b.encode(), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a)


def _root_dir(dir_fd: int, name: str) -> bool:
    """Whether ``name`` in ``dir_fd`` is a directory of root's (not a link); False when missing."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise UnsafePath(errno.EPERM, "not a directory of root's", name)
    return True


def remove_tree(dir_fd: int, name: str) -> None:
    """Remove the directory tree ``name`` in ``dir_fd``: each directory opened without following
    a link and checked to be root's, each entry removed on its directory's descriptor."""
    fd = os.open(
        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd
    )
    try:
        if os.fstat(fd).st_uid != 0:
            raise UnsafePath(errno.EPERM, "not a directory of root's", name)
        for entry in list(os.scandir(fd)):
            if entry.is_dir(follow_symlinks=False):
                remove_tree(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def switch_tree(dest: str, staged: str) -> bool:
    """Put the tree ``staged`` in the place of ``dest`` (siblings, both root's directories), in
    one step where the kernel and the filesystem can (the two names exchanged: ``dest`` is
    never missing), else by two renames; then remove the old tree. Whether anything was staged."""
    dest, staged = dest.rstrip("/"), staged.rstrip("/")
    parent, name = os.path.split(dest)
    if os.path.dirname(staged) != parent:
        raise ValueError(f"{staged} is not beside {dest}")
    new = os.path.basename(staged)
    fd = open_dir(parent)
    try:
        if not _root_dir(fd, new):
            return False
        if not _root_dir(fd, name):
            os.rename(new, name, src_dir_fd=fd, dst_dir_fd=fd)
            return True
        try:
            _exchange(fd, new, name)
            old = new
        except OSError as err:
            if err.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            old = f".{name}.sweep-fleet-old"
            if _root_dir(fd, old):
                remove_tree(fd, old)
            os.rename(name, old, src_dir_fd=fd, dst_dir_fd=fd)
            os.rename(new, name, src_dir_fd=fd, dst_dir_fd=fd)
        remove_tree(fd, old)
        return True
    finally:
        os.close(fd)


def run(module: AnsibleModule) -> dict:
    p = module.params
    began = time.monotonic()
    host = agent_runs.Host(module)
    units = agent_runs.units_of(host)
    every = pids()
    sweep = agent_runs.sweep_of(p["env_file"])
    sweep_id = sweep.rsplit("/", 1)[-1] if sweep else ""
    result: dict = {"changed": True, "interrupted": [], "left": [], "stopped": [], "switched": False}
    if module.check_mode:
        result.update(done=True, switched=os.path.isdir(p["code"]["staged"]))
        return result
    if p["interrupt"]:
        result["interrupted"] = agent_runs.interrupt(host, units, every, p["state_dir"], sweep_id)
    if p["wait"] > 0:
        host.wait_drained(list(units.values()), p["wait"])
    if not host.drained(list(units.values())) and not p["final"]:
        result.update(done=False, drain_seconds=round(time.monotonic() - began, 2))  # the next call waits on
        return result
    result["done"] = True
    left = agent_runs.running_runs(host, units, pids(), p["state_dir"], sweep_id)
    result["left"] = [run for runs in left.values() for run in runs]
    systemd = agent_units.Systemd(module)
    states = systemd.states(list(units))
    result["stopped"] = [i for i in units if states.get(i, ("inactive", ""))[0] != "inactive"]
    if result["stopped"]:
        systemd.run("stop", *(agent_units.unit(i) for i in result["stopped"]))
    result["drain_seconds"] = round(time.monotonic() - began, 2)
    users = agent_users(p["user"])
    deadline = time.monotonic() + STRAY_WAIT
    while (processes := agent_runs.user_processes(users, pids())) and time.monotonic() < deadline:
        time.sleep(0.25)
    if processes:
        module.fail_json(
            msg=f"the host is not stopped: these processes of the agents' users are left: {processes}. "
            "Run playbooks/stop.yml with -e wandb_agent_stop_mode=kill to end them."
        )
    try:
        result["switched"] = switch_tree(p["code"]["dest"], p["code"]["staged"])
    except (OSError, ValueError) as err:
        module.fail_json(msg=f"putting the staged code {p['code']['staged']} in place failed: {err}")
    # The unit files the staging wrote are read now (systemd was not reloaded then).
    args = {"reload": True, **p["units"]}
    result["units"] = run_step(module, "units", agent_units.ARGUMENT_SPEC, args, agent_units.run)
    try:
        host_record.write_given(p)
    except OSError as err:
        module.fail_json(msg=f"cannot write the record {p['record']}: {err}")
    return result
