"""A SLURM cluster on test hosts: the first host is the controller and login node, the
others are compute nodes; all share the fleet's /shared directory.

Debian's own packages (munge, slurmctld, slurmd, slurm-client; in the host image, off at
boot) with a minimal slurm.conf: the process tracking and task plugins that need no cgroup
delegation (proctrack/linuxproc, task/none), nodes that return to service by themselves,
a short KillWait so that a time limit ends a task in seconds, and a short job credential
life, after which a requeued task may start again.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from .fleet import LOGIN_USER, Fleet, FleetError, Host

CLUSTER_USER = "researcher"  # made in the image, the same uid on every host, no sudo
CLUSTER_UID = 2000
PARTITION = "batch"


def slurm_conf(controller: Host, nodes: list[Host], cpus: int = 2) -> str:
    lines = [
        "ClusterName=sweepfleet",
        f"SlurmctldHost={controller.name}({controller.ip})",
        "SlurmUser=slurm",
        "StateSaveLocation=/var/lib/slurm/slurmctld",
        "SlurmdSpoolDir=/var/lib/slurm/slurmd",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ReturnToService=2",
        "KillWait=10",
        "MinJobAge=30",
        "JobRequeue=1",
        # A requeued task may start again once the job credential of its last start has
        # expired (120 s by default): 15 s keeps the tests' time-limit rounds short.
        "AuthInfo=cred_expire=15",
    ]
    lines += [f"NodeName={n.name} NodeAddr={n.ip} CPUs={cpus} State=UNKNOWN" for n in nodes]
    lines.append(f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def start_cluster(fleet: Fleet, timeout: float = 120) -> tuple[Host, list[Host]]:
    """Configure and start SLURM on the fleet's hosts; return (controller, compute nodes).
    The cluster's user logs in with the fleet's key."""
    hosts = fleet.hosts()
    if len(hosts) < 2:
        raise FleetError("a SLURM test cluster needs a controller and at least one compute node")
    controller, nodes = hosts[0], hosts[1:]
    conf = slurm_conf(controller, nodes)
    key = base64.b64encode(secrets.token_bytes(1024)).decode()  # one munge key per cluster
    for host in hosts:
        fleet.ssh(host, "sudo tee /etc/slurm/slurm.conf >/dev/null", input=conf)
        fleet.ssh(
            host,
            "sudo sh -c 'umask 077; base64 -d > /etc/munge/munge.key; "
            "chown munge:munge /etc/munge/munge.key'",
            input=key,
        )
        fleet.ssh(
            host,
            f"sudo install -o {CLUSTER_USER} -g {CLUSTER_USER} -m 0600 "
            f"/home/{LOGIN_USER}/.ssh/authorized_keys /home/{CLUSTER_USER}/.ssh/authorized_keys",
        )
        daemon = "slurmctld" if host == controller else "slurmd"
        fleet.ssh(host, f"sudo systemctl enable --now munge {daemon}")
    fleet.ssh(
        controller,
        f"for i in $(seq {int(timeout)}); do "
        f"sinfo --noheader --states=idle --format=%D | grep -qx {len(nodes)} && exit 0; "
        "sleep 1; done; sinfo; exit 1",
        timeout=timeout + 10,
    )
    return controller, nodes


def write_inventory(fleet: Fleet, path: Path | str, login: Host) -> Path:
    """An inventory as a cluster user writes it: the login node in slurm_login, which is a
    child of fleet, reached as the cluster's user."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[slurm_login]\n"
        f"{login.name} ansible_host={login.ip} ansible_user={CLUSTER_USER} "
        f"ansible_ssh_private_key_file={fleet.key_file}\n\n"
        "[slurm_login:vars]\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts} "
        "-o StrictHostKeyChecking=accept-new'\n\n"
        "[fleet:children]\nslurm_login\n"
    )
    return path
