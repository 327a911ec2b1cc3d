"""Faults a real fleet meets, on two test hosts and the W&B stand-in: an agent killed
mid-run, a host restarted mid-sweep, a stopped host restarted, a finished sweep and a
reboot. After each, every grid value has finished (exit code 0) exactly once, with
wandb_sweep_action=rerun for the values whose runs crashed (W&B never runs those again).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fleet.fleet import podman
from standin import StandIn
from support import REPO, TEST_API_KEY, changed_tasks, recap, run_playbook, wait_until

pytestmark = pytest.mark.fleet

EXAMPLE = REPO / "examples" / "preemptible"


class Site:
    """Two hosts, a stand-in, the preemptible example and the playbooks."""

    def __init__(self, fleet, standin: StandIn, root: Path):
        self.fleet, self.standin = fleet, standin
        self.hosts = fleet.hosts()
        self.inventory = fleet.write_inventory(root / "hosts.ini")
        self.vars = root / "vars.yml"
        self.code = root / "code"
        shutil.copytree(EXAMPLE, self.code)

    def deploy(self, name: str, lrs: list[float], epochs: int, epoch_seconds: float, check: bool = True):
        self.vars.write_text(
            yaml.safe_dump(
                {
                    "wandb_credentials_api_key": TEST_API_KEY,
                    "wandb_credentials_base_url": self.standin.url,
                    "wandb_runtime_uv_source": "controller",
                    "wandb_code_local_path": str(self.code),
                    "wandb_sweep_project": "faults",
                    "wandb_sweep_name": name,
                    "wandb_sweep_program": "train.py",
                    "wandb_sweep_parameters": {
                        "lr": {"values": lrs},
                        "epochs": {"value": epochs},
                        "epoch_seconds": {"value": epoch_seconds},
                    },
                    "wandb_agent_stagger_seconds": 0.5,
                    "wandb_agent_restart_sec": 2,
                    "wandb_agent_term_timeout": 10,
                }
            )
        )
        self.last = self.play("deploy.yml", check=check)
        (sweep,) = [s for s in self.standin.sweeps.values() if s.config.get("name") == name]
        return sweep

    def play(self, playbook: str, *args: str, check: bool = True):
        return run_playbook(REPO / playbook, self.inventory, "-e", f"@{self.vars}", *args, check=check)

    def sh(self, host, command: str) -> str:
        return self.fleet.ssh(host, command).stdout

    def unit(self, host, *props: str) -> dict[str, str]:
        out = self.sh(host, "systemctl show wandb-agent@1 " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wandb_pids(self, host) -> set[int]:
        return {int(p) for p in self.sh(host, "pgrep -u wandb || true").split()}

    def running_on(self, sweep, host) -> list[dict]:
        return [
            r
            for r in self.standin.records(sweep.id)
            if r["state"] == "running" and r["agent_host"] == host.name
        ]

    def reboot(self, host):
        """Restart the test host (its systemd boots again); return it with the address it
        came back on (podman may hand out another), written into the inventory."""
        podman("restart", "--time", "10", host.container)
        self.hosts = self.fleet.hosts()
        (again,) = [h for h in self.hosts if h.name == host.name]
        forget = ["ssh-keygen", "-R", again.ip, "-f", str(self.fleet.known_hosts)]
        subprocess.run(forget, capture_output=True, check=False)
        self.fleet.write_inventory(self.inventory)
        self.fleet.wait_ready([again])
        return again

    def finish(self, sweep) -> None:
        """Wait for the sweep's end; rerun what crashed; every value finished exactly once."""
        self.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=240, what="the sweep to finish")
        crashed = [r for r in self.standin.records(sweep.id) if r["state"] != "finished"]
        if crashed:
            self.wait_agents_down(sweep)
            self.play("playbooks/sweep.yml", "-e", "wandb_sweep_action=rerun")
            self.standin.wait_for(
                lambda s: sweep.state == "FINISHED", timeout=240, what="the rerun to finish"
            )
        records = self.standin.records(sweep.id)
        finished = collections.Counter(
            r["params"]["lr"] for r in records if r["state"] == "finished" and r["exitcode"] == 0
        )
        assert finished == dict.fromkeys(sweep.config["parameters"]["lr"]["values"], 1), records
        assert not [r for r in records if r["state"] == "running"], records

    def wait_agents_down(self, sweep) -> None:
        for host in self.hosts:  # each agent learns of the end at its next heartbeat
            wait_until(
                lambda host=host: self.unit(host, "ActiveState")["ActiveState"] in ("inactive", "failed"),
                timeout=90,
                what=f"{host.name}'s agent to end with the sweep",
            )


@pytest.fixture(scope="module")
def site(make_fleet, tmp_path_factory):
    fleet = make_fleet(2)
    # A run nobody reports on for 20 s has crashed (W&B decides it from missing heartbeats).
    standin = StandIn(host=fleet.gateway(), api_key=TEST_API_KEY, run_timeout=20).start()
    yield Site(fleet, standin, tmp_path_factory.mktemp("faults"))
    standin.stop()


def test_an_agent_killed_mid_run_comes_back_and_leaves_nothing_behind(site):
    """Fault 1: SIGKILL to the unit's main process during a run."""
    sweep = site.deploy("killed", [0.1, 0.05, 0.02, 0.01], epochs=8, epoch_seconds=1.5)
    host = site.hosts[0]
    site.standin.wait_for(lambda s: site.running_on(sweep, host), timeout=120, what=f"a run on {host.name}")
    before = site.unit(host, "MainPID", "NRestarts")
    old = site.wandb_pids(host)
    assert int(before["MainPID"]) in old and len(old) >= 3  # launcher, agent, run (and helpers)
    site.sh(host, f"sudo kill -KILL {before['MainPID']}")
    wait_until(
        lambda: (
            int(site.unit(host, "NRestarts")["NRestarts"]) > int(before["NRestarts"])
            and site.unit(host, "ActiveState")["ActiveState"] == "active"
        ),
        timeout=60,
        what="systemd to restart the killed agent",
    )
    # Nothing of the killed agent is left: its run and the run's helpers died with the cgroup.
    assert not (old & site.wandb_pids(host)), "a process of the killed agent outlived it"
    site.finish(sweep)


def test_a_restarted_host_runs_its_agents_again_and_a_stopped_one_stays_stopped(site):
    """Fault 2: a host restarted mid-sweep; then a host stopped with stop.yml and restarted."""
    sweep = site.deploy("reboot", [0.1, 0.05, 0.02, 0.01, 0.005, 0.002], epochs=5, epoch_seconds=1.5)
    host = site.hosts[1]
    site.standin.wait_for(lambda s: site.running_on(sweep, host), timeout=120, what=f"a run on {host.name}")
    host = site.reboot(host)
    rebooted = time.time()
    # Back at boot by itself, taking new runs.
    site.standin.wait_for(
        lambda s: any(r["agent_host"] == host.name and r["start"] > rebooted for r in s.records(sweep.id)),
        timeout=120,
        what=f"{host.name} to take a run after its restart",
    )
    site.finish(sweep)
    site.play("playbooks/stop.yml", "--limit", host.name)
    host = site.reboot(host)
    state = site.unit(host, "ActiveState", "UnitFileState")
    assert (state["ActiveState"], state["UnitFileState"]) == ("inactive", "disabled"), state
    site.play("playbooks/start.yml", "--limit", host.name)
    assert site.unit(host, "UnitFileState")["UnitFileState"] == "enabled"


def test_an_ended_sweep_stays_ended_across_a_reboot_without_a_restart_loop(site):
    """Fault 5: the sweep has finished; a host restarts; its agent starts, sees the end and
    stays down: no restart, no new agent at W&B."""
    sweep = site.deploy("ended", [0.1, 0.05], epochs=1, epoch_seconds=0.5)
    site.finish(sweep)
    site.wait_agents_down(sweep)
    host = site.reboot(site.hosts[0])
    booted = time.time()
    agents = len(site.standin.agents)
    wait_until(
        lambda: site.unit(host, "ExecMainExitTimestampMonotonic")["ExecMainExitTimestampMonotonic"] != "0",
        timeout=60,
        what="the agent started at boot to end",
    )
    first = site.unit(host, "ActiveState", "ExecMainStatus", "NRestarts", "ExecMainStartTimestampMonotonic")
    assert (first["ActiveState"], first["ExecMainStatus"], first["NRestarts"]) == ("inactive", "0", "0"), (
        first
    )
    # Watched for 20 s (ten times wandb_agent_restart_sec): it stays down.
    while time.time() < booted + 20:
        again = site.unit(host, "ActiveState", "NRestarts", "ExecMainStartTimestampMonotonic")
        assert again == {k: first[k] for k in again}, again
        time.sleep(1)
    assert len(site.standin.agents) == agents, "an agent registered with W&B for an ended sweep"


def test_a_host_unreachable_during_deploy_is_named_and_converged_by_the_next_run(site):
    """Fault 3: one host's SSH is down during deploy.yml."""
    up, down = site.hosts
    # sshd and its sessions (Ansible keeps a connection open between runs: ControlPersist).
    podman("exec", down.container, "sh", "-c", "systemctl stop ssh; pkill -KILL -x sshd || true")
    try:
        sweep = site.deploy("unreachable", [0.1, 0.05, 0.02, 0.01, 0.005, 0.002], epochs=6, epoch_seconds=1.5,
                            check=False)  # fmt: skip
        counts = recap(site.last.stdout)
        assert site.last.returncode != 0 and counts[down.name]["unreachable"] == 1, site.last.stdout[-3000:]
        assert counts[up.name]["unreachable"] == counts[up.name]["failed"] == 0
        assert f"fatal: [{down.name}]: UNREACHABLE!" in site.last.stdout  # named
        assert site.unit(up, "ActiveState")["ActiveState"] == "active"  # the other host went on
    finally:
        podman("exec", down.container, "systemctl", "start", "ssh")
    again = site.play("deploy.yml")
    assert changed_tasks(again.stdout, up.name) == [], "the reachable host was changed again"
    assert changed_tasks(again.stdout, down.name), "the host that was down was not deployed"
    assert site.unit(down, "ActiveState")["ActiveState"] == "active"
    site.finish(sweep)
