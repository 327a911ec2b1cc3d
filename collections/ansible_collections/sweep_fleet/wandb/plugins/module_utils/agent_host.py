# Copyright: sweep-fleet developers
# Apache License 2.0
"""What the agents' host-side programs share: which processes are an agent's runs, and how
root acts on paths that runs can write.

Used by the ``agent_info``, ``agent_units`` and ``files`` modules and, copied next to it on
every host, by the agent launcher (``wandb_agent/files/sweep_fleet_agent.py``). Standard
library only (Python 3.8+), because the launcher runs with nothing but the venv's interpreter.

Root never acts on a path a run could rename or replace: a directory is reached by opening
each component from ``/`` with ``O_NOFOLLOW`` (a symbolic link is followed only where no one
but root could have put it), and what is changed is changed on the open descriptor. A file
a run wrote is read only when it is a regular file, no larger than a limit, opened without
following a link and without blocking (a FIFO would hang the reader).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import stat
import time

# The launcher's log lines start with this (status.yml tells them from the runs' output).
LOG_PREFIX = "sweep-fleet-agent: "
# An agent's unit: wandb-agent@INSTANCE.service.
UNIT_RE = re.compile(r"^wandb-agent@(.+)\.service$")
# A unit's ActiveState while it runs or is about to (systemctl(1)).
RUNNING_STATES = ("active", "activating", "reloading")


def env_file_values(text: str) -> dict[str, str]:
    """The KEY=VALUE lines of an environment file, read as systemd's EnvironmentFile= reads
    what sweep-fleet writes (the env_file_value filter): a double-quoted value whole, with
    \\" and \\\\ for a quote and a backslash; a single-quoted one as it is."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        name, value = line.split("=", 1)
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = re.sub(r'\\([\\"])', r"\1", value[1:-1])
        elif len(value) > 1 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def unit_properties(shown: str) -> dict[str, dict[str, str]]:
    """``systemctl show --property=Id,...`` output for several units, by each unit's Id."""
    units: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in [*shown.splitlines(), ""]:
        if not line.strip():
            if current.get("Id"):
                units[current["Id"]] = current
            current = {}
            continue
        key, _sep, value = line.partition("=")
        current[key] = value
    return units


def agent_instances(listed_units: str) -> set[str]:
    """The agent instances systemd knows: those in ``systemctl list-units --plain
    --no-legend wandb-agent@*`` output (loaded), and those enabled at boot."""
    names = set()
    for line in listed_units.splitlines():
        match = UNIT_RE.match(line.split()[0]) if line.split() else None
        if match:
            names.add(match.group(1))
    for path in glob.glob("/etc/systemd/system/*.wants/wandb-agent@*.service"):
        match = UNIT_RE.match(os.path.basename(path))
        if match:
            names.add(match.group(1))
    return names


# W&B's run and sweep ids: what wandb agent names its files after.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The most root reads of a file a run could have written (an agent's config-RUN.yaml is a
# few hundred bytes).
RUN_FILE_LIMIT = 256 * 1024
# Symbolic links followed on the way to a directory, at most (as the kernel's 40).
MAX_LINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def fd_sha256(fd: int) -> str:
    """The sha256 of what is left to read from the open descriptor ``fd``."""
    digest = hashlib.sha256()
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


class UnsafePath(OSError):
    """A path root will not act through: a link someone other than root could have made."""


def _trusted_dir(st: os.stat_result) -> bool:
    """Only root can rename or replace the entries of this directory (sticky: only the
    owner of an entry can, so a root-owned entry stays root's)."""
    return st.st_uid == 0 and (
        not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or bool(st.st_mode & stat.S_ISVTX)
    )


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _descend(fd: int, name: str) -> int:
    """The directory ``name`` in ``fd``, not through a link; ``fd`` is closed once that is
    open (on an error it stays open, for the caller to close)."""
    new = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
    os.close(fd)
    return new


def open_dir(path: str, create: bool = False, mode: int = 0o755) -> int:
    """A descriptor of the directory ``path``, reached component by component from ``/``.

    Every component is opened with ``O_NOFOLLOW``; a symbolic link on the way is followed
    only when it belongs to root and lies in a directory only root can change (``/var/run``
    -> ``/run``), never one a run or a local user could have made. ``create`` makes missing
    directories (root's, ``mode``). Raises UnsafePath for a link root will not follow, and
    FileNotFoundError or NotADirectoryError as open would.
    """
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    parts = _parts(path)
    fd = os.open("/", _DIR_FLAGS)
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                fd = _descend(fd, "..")
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):  # made at the same moment
                    os.mkdir(name, mode, dir_fd=fd)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                if not (st.st_uid == 0 and _trusted_dir(os.fstat(fd))):
                    why = "a link root does not follow (not root's, or in a directory others can change)"
                    raise UnsafePath(errno.ELOOP, why, name)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                parts = _parts(target) + parts
                continue
            fd = _descend(fd, name)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_regular(dir_fd: int, name: str, limit: int = RUN_FILE_LIMIT) -> bytes:
    """The content of the regular file ``name`` in ``dir_fd``: not through a link, without
    blocking on a FIFO or a device, refused above ``limit`` bytes (OSError)."""
    fd = os.open(
        name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd
    )
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", name)
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", name)
        return data
    finally:
        os.close(fd)


def open_under(base: str, *names: str) -> int:
    """A descriptor of the directory ``base/names...``, where ``base`` is root's and each of
    ``names`` (one component each) may have been made by a run: no link is followed there."""
    for name in names:
        if "/" in name or name in ("", ".", ".."):
            raise OSError(errno.EINVAL, "not a single path component", name)
    fd = open_dir(base)
    try:
        for name in names:
            fd = _descend(fd, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sweep_dir(wandb_dir: str, sweep_id: str) -> int | None:
    """A descriptor of WANDB_DIR/wandb/sweep-ID, where wandb agent writes a sweep's run
    configs (None when the id is not one, or there is no such directory)."""
    if not RUN_ID_RE.match(sweep_id or ""):
        return None
    try:
        return open_under(os.path.abspath(wandb_dir), "wandb", f"sweep-{sweep_id}")
    except (OSError, ValueError):
        return None


def started_runs(wandb_dir: str, sweep_id: str) -> dict[str, float]:
    """The runs wandb agent started in ``wandb_dir`` for a sweep, with the time each began:
    it writes each run's parameters to WANDB_DIR/wandb/sweep-ID/config-RUN.yaml first.

    ``wandb_dir`` is root's way in; what lies below it was made by the runs' user and is
    read without following links."""
    runs: dict[str, float] = {}
    fd = _sweep_dir(wandb_dir, sweep_id)
    if fd is None:
        return runs
    try:
        for entry in os.scandir(fd):
            name = entry.name
            run_id = name[len("config-") : -len(".yaml")]
            if name.startswith("config-") and name.endswith(".yaml") and RUN_ID_RE.match(run_id):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:  # removed meanwhile
                    continue
                if stat.S_ISREG(st.st_mode):
                    runs[run_id] = st.st_mtime
    except OSError:
        pass
    finally:
        os.close(fd)
    return runs


def run_config(wandb_dir: str, sweep_id: str, run_id: str) -> bytes | None:
    """The text of WANDB_DIR/wandb/sweep-ID/config-RUN.yaml, read with care (see
    read_regular), or None when it is missing, odd or too large."""
    fd = _sweep_dir(wandb_dir, sweep_id) if RUN_ID_RE.match(run_id or "") else None
    if fd is None:
        return None
    try:
        return read_regular(fd, f"config-{run_id}.yaml")
    except OSError:
        return None
    finally:
        os.close(fd)


# -- the code in an agent's working directory (Linux) -------------------------------------
# The repository's internals, and the run directory W&B writes itself: never linked.
LINK_SKIP = {".git", "wandb"}
# In every agent's working directory, a link to the venv: the sweep's default command runs
# VENV_LINK/bin/python, a relative path that is the venv's Python on Linux and on Windows
# hosts alike (where a bare `python` would be the base interpreter, cpython#86207).
VENV_LINK = ".sweep-fleet-venv"


def link_code(code: str, work: str, uid: int = -1, extra: dict[str, str] | None = None) -> list[str]:
    """Make the working directory ``work`` show the code: a root-owned link for each of the
    code's top-level entries, acting on ``work``'s descriptor only (runs write there).

    Links to entries the code no longer has are removed. Whatever a run put where a code
    entry belongs (a file in place of ``train.py``, which would then run for every later run)
    is moved aside to NAME.shadowed-TIME and replaced by the link; with ``uid`` (the runs'
    user) only entries of that user or root are moved, anything else is an error. ``extra``
    links further names to targets of their own (VENV_LINK to the venv). Returns what
    changed (+NAME, -NAME, !NAME for what was moved aside)."""
    code = code.rstrip("/")
    targets = {name: os.path.join(code, name) for name in os.listdir(code) if name not in LINK_SKIP}
    targets.update(extra or {})
    wanted = sorted(targets)
    changed: list[str] = []
    fd = open_dir(work)
    try:
        present = {entry.name: entry for entry in os.scandir(fd)}
        for name, entry in sorted(present.items()):
            if name in wanted or not entry.is_symlink():
                continue
            try:
                target = os.readlink(name, dir_fd=fd)
            except OSError:
                continue
            if os.path.dirname(target) == code:
                os.unlink(name, dir_fd=fd)
                changed.append(f"-{name}")
        for name in wanted:
            target = targets[name]
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode) and st.st_uid in (0, os.geteuid()):
                if os.readlink(name, dir_fd=fd) == target:
                    continue
            elif st is not None and not stat.S_ISLNK(st.st_mode):
                if uid != -1 and st.st_uid not in (uid, 0):
                    raise OSError(errno.EPERM, f"belongs to uid {st.st_uid}, not the agent's", name)
                aside = f"{name}.shadowed-{time.strftime('%Y%m%dT%H%M%S')}"
                os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
                changed.append(f"!{name}")
            # A link of our own under a temporary name, then renamed over the entry: the
            # name is never missing, and a link someone else made is replaced by root's.
            temp = f".{name}.sweep-fleet-link"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=fd)
            os.symlink(target, temp, dir_fd=fd)
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            changed.append(f"+{name}")
    finally:
        os.close(fd)
    return changed


def adopt(work: str, old_uid: int, uid: int, gid: int, max_depth: int = 256) -> int:
    """Give what ``old_uid`` owns in the tree ``work`` to ``uid``:``gid`` (the agents had one
    shared user before each got its own). Walks by descriptors and changes owners without
    following links; what belongs to anyone else (a hard link to a root file) is left alone.
    Returns how many entries changed."""
    count = 0

    def walk(fd: int, depth: int) -> None:
        nonlocal count
        if depth > max_depth:
            return
        for entry in list(os.scandir(fd)):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid != old_uid:
                continue
            os.chown(entry.name, uid, gid, dir_fd=fd, follow_symlinks=False)
            count += 1
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(entry.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except OSError:
                    continue
                try:
                    if os.fstat(sub).st_ino == st.st_ino:  # still the directory looked at
                        walk(sub, depth + 1)
                finally:
                    os.close(sub)

    fd = open_dir(work)
    try:
        walk(fd, 0)
    finally:
        os.close(fd)
    return count


def agent_users(base: str) -> dict[int, str]:
    """The agents' users: BASE-N, and BASE (the one user of versions before 0.5.0), by uid."""
    import pwd  # not on Windows, where the launcher imports this file too

    pattern = re.compile(re.escape(base) + r"(-[0-9]+)?")
    return {entry.pw_uid: entry.pw_name for entry in pwd.getpwall() if pattern.fullmatch(entry.pw_name)}


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(parent: int, among: list[int] | None = None) -> list[int]:
    found = []
    for pid in pids() if among is None else among:
        fields = stat_fields(pid)
        if fields and fields[0] != "Z" and int(fields[1]) == parent:
            found.append(pid)
    return sorted(found)


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_agent(pid: int) -> bool:
    """A ``wandb agent`` process (``.../wandb agent ...`` or ``python -m wandb agent ...``)."""
    args = cmdline(pid)
    return "agent" in args and any(os.path.basename(a) in ("wandb", "wandb.cli.cli") for a in args)


def agent_of(main_pid: int, among: list[int] | None = None) -> int:
    """The ``wandb agent`` process of a unit whose main process is the launcher (or the agent)."""
    if not main_pid:
        return 0
    if is_agent(main_pid):
        return main_pid
    for pid in children(main_pid, among):
        if is_agent(pid):
            return pid
    return 0


def runs_of(agent: int, among: list[int] | None = None) -> list[int]:
    """The agent's runs: children that lead their own process group but not a session.

    wandb-core, the agent's own helper, leads a session of its own and is never a run.
    """
    runs = []
    for pid in children(agent, among) if agent else []:
        fields = stat_fields(pid)
        if fields and int(fields[2]) == pid and int(fields[3]) != pid:
            runs.append(pid)
    return runs


# -- GPUs ----------------------------------------------------------------------------------
# What `nvidia-smi -q -x` prints (the NVML XML report, nvsmi_device DTD): per <gpu>, its
# PCI bus id (the id= attribute), <minor_number> (/dev/nvidiaN), <uuid>, utilization,
# framebuffer memory and the compute processes. nvidia-smi numbers the GPUs in PCI bus order
# (its index, and CUDA's with CUDA_DEVICE_ORDER=PCI_BUS_ID), which is the report's order.
NVIDIA_SMI_XML = ("nvidia-smi", "-q", "-x")
NVIDIA_SMI_LIMIT = 4 * 1024 * 1024
GPU_UUID_RE = re.compile(r"^GPU-[0-9a-fA-F-]{8,64}$")
BUS_ID_RE = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")  # domain:bus:device.function


def _number(text: str | None) -> int:
    """The leading integer of an XML value ("81920 MiB", "35 %"), 0 when there is none."""
    match = re.match(r"\s*(\d+)", text or "")
    return int(match.group(1)) if match else 0


def parse_gpus(xml_text: str) -> list[dict]:
    """The GPUs of an ``nvidia-smi -q -x`` report, in its (PCI bus) order: index, uuid,
    bus_id, minor (-1 when not known), util (%), memory_used and memory_total (MiB), and
    processes (pid, memory MiB, type). Raises ValueError for what is not such a report."""
    import xml.etree.ElementTree as ET  # only when there are GPUs to read

    if len(xml_text) > NVIDIA_SMI_LIMIT or "<!ENTITY" in xml_text:
        raise ValueError("not an nvidia-smi report")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise ValueError(f"not an nvidia-smi report: {err}") from None
    if root.tag != "nvidia_smi_log":
        raise ValueError("not an nvidia-smi report")
    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        uuid = (gpu.findtext("uuid") or "").strip()
        if not GPU_UUID_RE.match(uuid):
            raise ValueError(f"GPU {index} has no UUID in the nvidia-smi report")
        minor = (gpu.findtext("minor_number") or "").strip()
        bus_id = (gpu.get("id") or gpu.findtext("pci/pci_bus_id") or "").strip().lower()
        if not BUS_ID_RE.match(bus_id):
            raise ValueError(f"GPU {index} has no PCI bus id in the nvidia-smi report")
        processes = []
        for proc in gpu.findall("processes/process_info"):
            pid = _number(proc.findtext("pid"))
            if pid > 0:
                processes.append(
                    {
                        "pid": pid,
                        "memory": _number(proc.findtext("used_memory")),
                        "type": (proc.findtext("type") or "").strip(),
                    }
                )
        gpus.append(
            {
                "index": index,
                "uuid": uuid,
                "bus_id": bus_id,
                "minor": int(minor) if minor.isdigit() else -1,
                "util": _number(gpu.findtext("utilization/gpu_util")),
                "memory_used": _number(gpu.findtext("fb_memory_usage/used")),
                "memory_total": _number(gpu.findtext("fb_memory_usage/total")),
                "processes": processes,
            }
        )
    return gpus


def read_gpus(timeout: float = 30) -> list[dict] | None:
    """This host's GPUs from ``nvidia-smi -q -x`` (None: no nvidia-smi, or it failed)."""
    import subprocess

    try:
        done = subprocess.run(
            NVIDIA_SMI_XML,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        return parse_gpus(done.stdout)
    except ValueError:
        return None


def gib(mib: int) -> str:
    return f"{mib / 1024:.0f} GiB" if mib >= 10 * 1024 else f"{mib / 1024:.1f} GiB"


def gpu_busy(gpus: list[dict], uuids: list[str], mine, busy_mib: int = 0) -> str | None:
    """Why the GPUs ``uuids`` are not free for a new run, or None: a compute process that
    ``mine(pid)`` does not claim is on one of them, or (``busy_mib`` > 0) the memory others
    hold there reaches busy_mib. Names the GPU by its index, the process and its memory."""
    wanted = {u.lower() for u in uuids}
    for gpu in gpus:
        if gpu["uuid"].lower() not in wanted:
            continue
        others = [p for p in gpu["processes"] if not mine(p["pid"])]
        if others:
            biggest = max(others, key=lambda p: p["memory"])
            return f"GPU {gpu['index']} busy, pid {biggest['pid']}, {gib(biggest['memory'])}"
        if busy_mib > 0:
            held = gpu["memory_used"] - sum(p["memory"] for p in gpu["processes"])
            if held >= busy_mib:
                return f"GPU {gpu['index']} busy, {gib(held)} held outside this agent"
    return None


def cgroup_of(pid: int | str) -> str:
    """The process's cgroup (v2) path, empty when it cannot be read (another user's process
    under ProtectProc=invisible, or one that has ended)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            text = handle.read(4096)
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""
