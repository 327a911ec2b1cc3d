# Copyright: sweep-fleet developers
# Apache License 2.0
"""What the agents' host-side programs share: which processes are runs, and a sweep's state.

Used by the ``agent_info`` module and, copied next to it on every host, by the agent
launcher (``wandb_agent/files/sweep_fleet_agent.py``). Standard library only (Python 3.8+),
because the launcher runs with nothing but the venv's interpreter.
"""

from __future__ import annotations

import base64
import json
import netrc
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.wandb.ai"
ENDED_STATES = ("FINISHED", "CANCELED")

# The sweep's state, as wandb's own clients ask for it.
SWEEP_STATE_QUERY = """
query SweepState($entity: String, $project: String, $name: String!) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $name) { id name state }
  }
}
"""


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


class SweepStateError(Exception):
    """The state could not be read; ``permanent`` when asking again will not help."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def api_key(netrc_path: str, base_url: str) -> str:
    try:
        entry = netrc.netrc(netrc_path).authenticators(urlsplit(base_url).netloc)
    except (OSError, netrc.NetrcParseError) as err:
        raise SweepStateError(f"cannot read the key from {netrc_path}: {err}", permanent=True) from None
    if not entry or not entry[2]:
        raise SweepStateError(
            f"{netrc_path} has no key for {urlsplit(base_url).netloc}: deploy the credentials again",
            permanent=True,
        )
    return entry[2]


def sweep_state(path: str, base_url: str, key: str, timeout: float = 20) -> str:
    """RUNNING, PAUSED, FINISHED, CANCELED, ... for ENTITY/PROJECT/ID, or SweepStateError."""
    try:
        entity, project, name = path.split("/")
    except ValueError:
        raise SweepStateError(f"not a sweep path ENTITY/PROJECT/ID: {path!r}", permanent=True) from None
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    body = {"query": SWEEP_STATE_QUERY, "variables": {"entity": entity, "project": project, "name": name}}
    auth = base64.b64encode(f"api:{key}".encode()).decode()
    request = urllib.request.Request(
        base + "/graphql",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as err:
        permanent = err.code in (401, 403, 404)
        raise SweepStateError(f"{base} answered HTTP {err.code} for sweep {path}", permanent) from None
    except (OSError, ValueError) as err:
        raise SweepStateError(f"cannot reach {base}: {getattr(err, 'reason', err)}") from None
    if payload.get("errors"):
        messages = "; ".join(str(e.get("message", e)) for e in payload["errors"])
        raise SweepStateError(f"{base} refused the question for sweep {path}: {messages}", True)
    sweep = ((payload.get("data") or {}).get("project") or {}).get("sweep")
    if not sweep:
        raise SweepStateError(f"there is no sweep {path} at {base}", permanent=True)
    return str(sweep.get("state") or "RUNNING").upper()
