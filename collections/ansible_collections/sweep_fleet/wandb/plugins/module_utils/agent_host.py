# Copyright: sweep-fleet developers
# Apache License 2.0
"""What the agents' host-side programs share: which processes are an agent's runs.

Used by the ``agent_info`` module and, copied next to it on every host, by the agent
launcher (``wandb_agent/files/sweep_fleet_agent.py``). Standard library only (Python 3.8+),
because the launcher runs with nothing but the venv's interpreter.
"""

from __future__ import annotations

import glob
import os
import re

# The launcher's log lines start with this (status.yml tells them from the runs' output).
LOG_PREFIX = "sweep-fleet-agent: "
# An agent's unit: wandb-agent@INSTANCE.service.
UNIT_RE = re.compile(r"^wandb-agent@(.+)\.service$")


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


def started_runs(wandb_dir: str, sweep_id: str) -> dict[str, float]:
    """The runs wandb agent started in ``wandb_dir`` for a sweep, with the time each began:
    it writes each run's parameters to WANDB_DIR/wandb/sweep-ID/config-RUN.yaml first."""
    folder = os.path.join(wandb_dir, "wandb", f"sweep-{sweep_id}")
    runs = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return runs
    for name in names:
        if name.startswith("config-") and name.endswith(".yaml"):
            try:
                runs[name[len("config-") : -len(".yaml")]] = os.stat(os.path.join(folder, name)).st_mtime
            except OSError:  # removed meanwhile
                continue
    return runs


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
