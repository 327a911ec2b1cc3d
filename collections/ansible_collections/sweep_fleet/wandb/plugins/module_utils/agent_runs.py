# Copyright: sweep-fleet developers
# Apache License 2.0
"""What the agents on a host are running, read by root: each unit's state, the runs of its
agent and their parameters, the sweep. Used by the agent_info module and by rollout (the
drain of a staged update)."""

from __future__ import annotations

import json
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (
    LOG_PREFIX,
    RUN_ID_RE,
    agent_instances,
    agent_of,
    env_file_values,
    run_config,
    runs_of,
)

ERROR_RE = re.compile(r"error|traceback|exception|failed|killed", re.IGNORECASE)
SHOW = ("ActiveState", "SubState", "StateChangeTimestamp", "InvocationID", "MainPID", "NRestarts")
INVOCATION_RE = re.compile(r"^[0-9a-f]{32}$")


def _read(path: str, mode: str = "r"):
    try:
        with open(path, mode) as handle:
            return handle.read()
    except OSError:
        return None


def _environ(pid: int) -> dict[str, str]:
    raw = _read(f"/proc/{pid}/environ", "rb") or b""
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _unit_of(pid: int) -> str:
    for line in (_read(f"/proc/{pid}/cgroup") or "").splitlines():
        match = re.search(r"/(wandb-agent@[^/]+\.service)", line)
        if match:
            return match.group(1)
    return ""


def _env_value(path: str, name: str) -> str:
    return env_file_values(_read(path) or "").get(name, "")


def _params(text: str) -> dict:
    """The run's parameters from the agent's config-RUNID.yaml ({name: {value: V}})."""
    try:
        import yaml

        class NoAliases(yaml.SafeLoader):
            """No aliases: a few lines of them expand into more than any memory (a run wrote this)."""

            def compose_node(self, parent, index):
                if self.check_event(yaml.AliasEvent):
                    raise yaml.YAMLError("aliases are not read")
                return super().compose_node(parent, index)

        data = yaml.load(text, Loader=NoAliases) or {}  # a SafeLoader, without aliases
        if not isinstance(data, dict):
            return {}
        return {k: v.get("value") for k, v in data.items() if isinstance(v, dict) and "value" in v}
    except ImportError:
        pass
    except Exception:  # a half-written or hostile file: report no parameters rather than fail
        return {}
    params, name = {}, None
    for line in text.splitlines():
        top = re.match(r"^([^\s#][^:]*):\s*$", line)
        value = re.match(r"^\s+value:\s*(.*)$", line)
        if top:
            name = top.group(1).strip().strip("'\"")
        elif value and name:
            text = value.group(1).strip()
            try:  # numbers and booleans as YAML writes them
                params[name] = json.loads(text.replace("'", '"'))
            except ValueError:
                params[name] = text.strip("'\"")
            name = None
    return params


class Host:
    def __init__(self, module: AnsibleModule):
        self.module = module

    def systemctl(self, *args: str) -> str:
        rc, out, _err = self.module.run_command(["systemctl", *args])
        return out if rc == 0 else ""

    def instances(self) -> list[str]:
        names = agent_instances(
            self.systemctl("list-units", "--all", "--plain", "--no-legend", "--type=service", "wandb-agent@*")
        )
        return sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))

    def drained(self, units: list[str]) -> bool:
        """Whether none of ``units`` is running (SubState); not when systemd does not answer."""
        if not units:
            return True
        out = self.systemctl("show", "--property=SubState", "--value", "--", *units)
        return bool(out) and "running" not in out.split()

    def wait_drained(self, units: list[str], seconds: int) -> None:
        """Until none of ``units`` is running (SubState), for at most ``seconds``."""
        deadline = time.monotonic() + seconds
        while units and time.monotonic() < deadline:
            if self.drained(units):
                return
            time.sleep(0.25)

    def show(self, unit: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in SHOW))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def last_error(self, unit: str, lines: int, invocation: str) -> str:
        """The last error line of the unit's journal since it was last started."""
        command = ["journalctl", "--lines", str(lines), "--output", "cat", "--no-pager", "--quiet"]
        # The lines of the unit's last start: its invocation's. (On the test hosts a --since
        # of the start time, with --lines, left out the newest lines: the launcher's reason.)
        if INVOCATION_RE.match(invocation):
            command.append(f"_SYSTEMD_INVOCATION_ID={invocation}")
        else:
            command += ["--unit", unit]
        _rc, out, _err = self.module.run_command(command)
        # The launcher's own reason (why it stopped) first: the runs' output and systemd's
        # lines about the unit ("wandb-agent@1.service: Failed with result 'exit-code'.")
        # may come after it and say less.
        systemd = (unit if unit.endswith(".service") else unit + ".service") + ": "
        errors = [line.strip() for line in out.splitlines() if ERROR_RE.search(line)]
        launcher = [line[len(LOG_PREFIX) :] for line in errors if line.startswith(LOG_PREFIX)]
        matches = launcher or [line for line in errors if not line.startswith(systemd)]
        return matches[-1][:300] if matches else ""


def run_entries(main_pid: int, among: list[int], wandb_dir: str, sweep_id: str) -> list[dict]:
    """The runs of the unit whose main process is ``main_pid`` (the launcher). A run's id
    comes from its environment, its parameters from the agent's file in ``wandb_dir``."""
    runs = []
    for pid in runs_of(agent_of(main_pid, among), among):
        run_id = _environ(pid).get("WANDB_RUN_ID", "")
        if not RUN_ID_RE.match(run_id):
            run_id = ""
        text = run_config(wandb_dir, sweep_id, run_id) if run_id else None
        runs.append(
            {"id": run_id, "pid": pid, "params": _params(text.decode(errors="replace")) if text else {}}
        )
    return runs


def sweep_of(env_file: str, sweep: str = "") -> str:
    """The agents' sweep (ENTITY/PROJECT/ID): ``sweep``, else their environment file's.
    Hosts deployed before 0.7.0 name it in agent.env, beside it."""
    return (
        sweep
        or _env_value(env_file, "SWEEP_FLEET_SWEEP")
        or _env_value(os.path.join(os.path.dirname(env_file), "agent.env"), "SWEEP_FLEET_SWEEP")
    )


def units_of(host: Host) -> dict[str, str]:
    """Each agent instance's unit, in instance order."""
    return {instance: f"wandb-agent@{instance}.service" for instance in host.instances()}


def running_runs(host: Host, units: dict[str, str], among: list[int], state_dir: str, sweep_id: str) -> dict:
    """The runs of each unit that is running now, by unit."""
    found = {}
    for instance, unit in units.items():
        props = host.show(unit)
        main_pid = int(props.get("MainPID") or 0)
        if props.get("SubState") == "running" and main_pid:
            found[unit] = run_entries(main_pid, among, os.path.join(state_dir, "runs", instance), sweep_id)
    return found


def interrupt(
    host: Host, units: dict[str, str], among: list[int], state_dir: str, sweep_id: str
) -> list[dict]:
    """Ask each running agent to take no new run (SIGINT to its unit's main process, the
    launcher, which passes it on to the agent once); the runs each was running then."""
    asked = []
    for unit, runs in running_runs(host, units, among, state_dir, sweep_id).items():
        # An agent may end on its own meanwhile (its sweep ran out of work): no main process.
        host.systemctl("kill", "--kill-whom=main", "--signal=SIGINT", unit)
        asked.append({"unit": unit, "runs": runs})
    return asked


def _owner(pid: int) -> int:
    """The process's user id, -1 when it has ended."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def _command(pid: int) -> str:
    """The process's command line, as one line of at most 200 characters."""
    text = (_read(f"/proc/{pid}/cmdline", "rb") or b"").replace(b"\0", b" ").decode(errors="replace")
    return text.strip()[:200]


def user_processes(users: dict[int, str], among: list[int]) -> list[dict]:
    """The processes of ``users`` (by uid) among ``among``: pid, user, unit and command."""
    found = []
    for pid in among:
        owner = _owner(pid)
        if owner in users:
            found.append({"pid": pid, "user": users[owner], "unit": _unit_of(pid), "command": _command(pid)})
    return found
