#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent_info
short_description: What the W&B agents on a host are doing
description:
  - Reads, for every C(wandb-agent@.service) instance on the host, the unit's state and since
    when, the runs it is running now (run id, parameters, process), the runs it has ended for
    the sweep, and the last error line of its journal.
  - Also lists every process left of the agents' users, so that a stop can prove that
    nothing (no orphaned run, no GPU-holding grandchild) is left behind.
  - What the runs wrote (an agent's C(config-RUN.yaml)) is read only at the place the
    agent writes it, without following a link or blocking, as a regular file of at most
    256 KiB, and parsed without YAML aliases; anything else counts as no parameters.
  - Changes nothing; safe in check mode.
version_added: "0.1.0"
options:
  sweep:
    description: The sweep (ENTITY/PROJECT/ID) whose ended runs are counted. Empty counts none.
    type: str
    default: ""
  env_file:
    description: The agents' environment file, where the sweep is read from when O(sweep) is empty.
    type: path
    default: /etc/sweep-fleet/sweep.env
  state_dir:
    description: The agents' state directory (run directories are C(STATE_DIR/runs/INSTANCE)).
    type: path
    default: /var/lib/sweep-fleet
  user:
    description:
      - The agents' users are this name and a number (V(wandb-1)); this name alone is the
        one user of versions before 0.5.0.
    type: str
    default: wandb
  journal_lines:
    description: How many of each unit's last journal lines are searched for an error.
    type: int
    default: 300
  wait_drained:
    description:
      - Seconds to wait, before reading, until no agent's unit is running any more (its
        C(SubState) is no longer V(running)), looking every quarter of a second; V(0) reads
        at once. A drain waits with it on the host, so that an agent that ends is seen at
        once, in one call. RV(drained) tells whether the wait ended that way.
    type: int
    default: 0
    version_added: "0.11.0"
  interrupt:
    description:
      - Before the wait, ask each agent whose unit is running to take no new run (a drain -
        C(SIGINT) to the unit's main process, the launcher, which passes it on to the agent
        once). RV(interrupted) lists the runs each was running then.
    type: bool
    default: false
    version_added: "0.11.0"
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Read what the agents do
  sweep_fleet.wandb.agent_info:
    sweep: "{{ wandb_agent_sweep }}"
  become: true
  register: agents
"""

RETURN = r"""
drained:
  description: Whether no agent's unit was running when the agents were read.
  type: bool
  returned: always
sweep:
  description: The sweep the agents work on (ENTITY/PROJECT/ID), empty when not known.
  type: str
  returned: always
agents:
  description: One entry per agent unit, in instance order.
  type: list
  elements: dict
  returned: always
  contains:
    instance:
      description: The instance name (C(1) for C(wandb-agent@1.service)).
      type: str
    unit:
      description: The unit's name.
      type: str
    active_state:
      description: systemd's ActiveState, such as V(active), V(inactive) or V(failed).
      type: str
    sub_state:
      description: systemd's SubState, such as V(running), V(dead) or V(auto-restart).
      type: str
    since:
      description: When the unit entered its state, in systemd's format.
      type: str
    main_pid:
      description: The unit's main process (the launcher), 0 when it is not running.
      type: int
    restarts:
      description: Automatic restarts since the unit was last started by hand.
      type: int
    runs:
      description: The runs the agent is running now (C(id), C(pid), C(params)).
      type: list
      elements: dict
    runs_ended:
      description: Runs of this sweep this instance has run and that have ended.
      type: int
    last_error:
      description: The last error line of the unit's journal since it was last started, or an empty string.
      type: str
    gpus:
      description:
        - The agent's GPUs (its C(CUDA_VISIBLE_DEVICES)) as C(nvidia-smi) reports them now
          (C(index), C(uuid), C(util) in %, C(memory_used) and C(memory_total) in MiB); empty for
          a CPU agent or a host without C(nvidia-smi).
      type: list
      elements: dict
    waiting:
      description:
        - With polite GPU sharing, why the agent takes no new run (V(GPU 1 busy, pid 4242 of
          alice, 20 GiB)); empty when its GPUs are free or it shares none.
      type: str
gpu_orphans:
  description:
    - GPU memory held by a process that belongs to no agent and no logged-in user (no session
      of its owner), with C(pid), C(user), C(gpu) (index), C(memory) (MiB) and C(command).
  type: list
  elements: dict
  returned: always
interrupted:
  description:
    - With O(interrupt), the units that were asked to take no new run (C(unit)) and the runs
      each was running when asked (C(runs), as in RV(agents)); empty otherwise.
  type: list
  elements: dict
  returned: always
  version_added: "0.11.0"
user_processes:
  description: Every process of the agents' users on the host (C(pid), C(user), C(unit), C(command)).
  type: list
  elements: dict
  returned: always
"""

import os  # noqa: E402
import pwd  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import (  # noqa: E402
    agent_users,
    cgroup_of,
    gib,
    gpu_busy,
    pids,
    read_gpus,
    started_runs,
)
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_runs import (  # noqa: E402
    Host,
    _command,
    _env_value,
    _owner,
    _read,
    interrupt,
    run_entries,
    sweep_of,
    units_of,
    user_processes,
)

AGENT_CGROUP_RE = re.compile(r"/wandb-agent@([^/]+)\.service(/|$)")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def logged_in_uids(sessions_dir: str = "/run/systemd/sessions") -> set[int]:
    """The users with a login session (systemd-logind's session files name their UID)."""
    uids = set()
    try:
        names = os.listdir(sessions_dir)
    except OSError:
        return uids
    for name in names:
        text = _read(os.path.join(sessions_dir, name)) or ""
        match = re.search(r"^UID=(\d+)$", text, re.MULTILINE)
        if match:
            uids.add(int(match.group(1)))
    return uids


def gpu_report(gpus: list[dict], agents: list[dict], sessions: set[int]) -> list[dict]:
    """Fill each agent's ``gpus`` and ``waiting`` from nvidia-smi's ``gpus``; return the
    orphans: GPU processes of no agent's unit whose owner has no login session."""
    unit_of = {}
    for gpu in gpus:
        for proc in gpu["processes"]:
            match = AGENT_CGROUP_RE.search(cgroup_of(proc["pid"]))
            unit_of[proc["pid"]] = match.group(1) if match else None
    for agent in agents:
        uuids = [u.lower() for u in agent.pop("_uuids", [])]
        agent["gpus"] = [
            {k: g[k] for k in ("index", "uuid", "util", "memory_used", "memory_total")}
            for g in gpus
            if g["uuid"].lower() in uuids
        ]
        agent["waiting"] = ""
        if agent.pop("_polite", False) and uuids:
            busy = gpu_busy(
                gpus, uuids, lambda pid, i=agent["instance"]: unit_of.get(pid) == i, agent.pop("_busy_mib", 0)
            )
            if busy:  # the process's owner, which only root can tell, goes after its pid
                agent["waiting"] = re.sub(
                    r"pid (\d+)", lambda m: f"pid {m.group(1)} of {_user(_owner(int(m.group(1))))}", busy
                )
        agent.pop("_busy_mib", None)
    orphans = []
    for gpu in gpus:
        for proc in gpu["processes"]:
            owner = _owner(proc["pid"])
            if unit_of.get(proc["pid"]) is not None or owner < 0 or owner in sessions:
                continue
            orphans.append(
                {
                    "pid": proc["pid"],
                    "user": _user(owner),
                    "gpu": gpu["index"],
                    "memory": proc["memory"],
                    "size": gib(proc["memory"]),
                    "command": _command(proc["pid"]),
                }
            )
    return orphans


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sweep": {"type": "str", "default": ""},
            "env_file": {"type": "path", "default": "/etc/sweep-fleet/sweep.env"},
            "state_dir": {"type": "path", "default": "/var/lib/sweep-fleet"},
            "user": {"type": "str", "default": "wandb"},
            "journal_lines": {"type": "int", "default": 300},
            "wait_drained": {"type": "int", "default": 0},
            "interrupt": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    host = Host(module)
    every = pids()
    sweep = sweep_of(p["env_file"], p["sweep"])
    sweep_id = sweep.rsplit("/", 1)[-1] if sweep else ""
    units = units_of(host)
    interrupted = []
    if p["interrupt"] and not module.check_mode:
        interrupted = interrupt(host, units, every, p["state_dir"], sweep_id)
    if p["wait_drained"] > 0:
        host.wait_drained(list(units.values()), p["wait_drained"])
    agents = []
    for instance, unit in units.items():
        props = host.show(unit)
        main_pid = int(props.get("MainPID") or 0)
        work = os.path.join(p["state_dir"], "runs", instance)
        runs = run_entries(main_pid, every, work, sweep_id) if main_pid else []
        started = set(started_runs(work, sweep_id)) if sweep_id else set()
        agents.append(
            {
                "instance": instance,
                "unit": unit,
                "active_state": props.get("ActiveState", "unknown"),
                "sub_state": props.get("SubState", "unknown"),
                "since": props.get("StateChangeTimestamp", ""),
                "main_pid": main_pid,
                "restarts": int(props.get("NRestarts") or 0),
                "runs": runs,
                "runs_ended": len(started - {r["id"] for r in runs}),
                "last_error": host.last_error(unit, p["journal_lines"], props.get("InvocationID") or ""),
            }
        )
        # Its GPUs (root's settings file) and whether it shares them politely (its launcher's
        # command line), for the GPU report below.
        instance_env = os.path.join(os.path.dirname(p["env_file"]), f"agent-{instance}.env")
        visible = _env_value(instance_env, "CUDA_VISIBLE_DEVICES")
        agents[-1]["_uuids"] = [u.strip() for u in visible.split(",") if u.strip().startswith("GPU-")]
        launcher = (_read(f"/proc/{main_pid}/cmdline", "rb") or b"").split(b"\0") if main_pid else []
        if b"--gpu-share" in launcher and b"polite" in launcher:
            agents[-1]["_polite"] = True
            mib = (
                launcher[launcher.index(b"--gpu-busy-mib") + 1]
                if b"--gpu-busy-mib" in launcher[:-1]
                else b"0"
            )
            agents[-1]["_busy_mib"] = int(mib) if mib.isdigit() else 0
    gpus = read_gpus() if any(a.get("_uuids") for a in agents) or os.path.exists("/dev/nvidiactl") else None
    orphans = gpu_report(gpus or [], agents, logged_in_uids())
    users = agent_users(p["user"])
    processes = user_processes(users, every)
    drained = all(a["sub_state"] != "running" for a in agents)
    module.exit_json(
        changed=False,
        drained=drained,
        interrupted=interrupted,
        sweep=sweep,
        agents=agents,
        user_processes=processes,
        gpu_orphans=orphans,
    )


if __name__ == "__main__":
    main()
