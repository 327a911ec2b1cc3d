"""Faults a real fleet meets, on two test hosts and the W&B stand-in: an agent killed
mid-run, a host restarted mid-sweep, a stopped host restarted, a finished sweep and a
reboot. After each, every grid value has finished (exit code 0) exactly once, with
wandb_sweep_action=rerun for the values whose runs crashed (W&B never runs those again).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from fleet.fleet import podman
from standin import StandIn
from standin.server import STALE_SECONDS
from support import (
    REPO,
    TEST_API_KEY,
    ansible_env,
    changed_tasks,
    fleet_vars,
    playbook_command,
    recap,
    run_playbook,
    wait_until,
)

pytestmark = pytest.mark.fleet

EXAMPLE = REPO / "examples" / "preemptible"
NODE = REPO / "tests" / "programs" / "node.py"


class Site:
    """Two hosts, a stand-in, the preemptible example and the playbooks."""

    def __init__(self, fleet, standin: StandIn, root: Path):
        self.fleet, self.standin = fleet, standin
        self.hosts = fleet.hosts()
        self.inventory = fleet.write_inventory(root / "hosts.ini")
        self.vars = root / "vars.yml"
        self.code = root / "code"
        shutil.copytree(EXAMPLE, self.code)
        shutil.copy(NODE, self.code)
        self.host_vars = root / "host_vars"  # next to the inventory: Ansible reads it

    def write_vars(
        self,
        name: str,
        lrs: list[float],
        epochs: int,
        epoch_seconds: float,
        host_vars: dict[str, dict] | None = None,
    ):
        shutil.rmtree(self.host_vars, ignore_errors=True)
        self.host_vars.mkdir()
        for host, values in (host_vars or {}).items():
            (self.host_vars / f"{host}.yml").write_text(yaml.safe_dump(values))
        self.vars.write_text(
            yaml.safe_dump(
                fleet_vars(
                    self.standin,
                    wandb_code_local_path=str(self.code),
                    wandb_sweep_project="faults",
                    wandb_sweep_name=name,
                    wandb_sweep_program="node.py",
                    wandb_sweep_parameters={
                        "lr": {"values": lrs},
                        "epochs": {"value": epochs},
                        "epoch_seconds": {"value": epoch_seconds},
                    },
                    wandb_agent_stagger_seconds=0.5,
                    wandb_agent_restart_sec=2,
                    wandb_agent_term_timeout=10,
                )
            )
        )

    def deploy(self, name: str, *args, check: bool = True, **kwargs):
        self.write_vars(name, *args, **kwargs)
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

    def unit_processes(self, host, unit: str = "wandb-agent@1.service") -> set[tuple[int, str]]:
        """Every process in the unit's cgroup, whoever it runs as: (pid, start time), so that
        a pid used again by a new process is not taken for an old one."""
        group = self.sh(host, f"systemctl show -p ControlGroup --value {unit}").strip()
        if not group:
            return set()
        procs = f"'/sys/fs/cgroup/unified{group}/cgroup.procs' '/sys/fs/cgroup{group}/cgroup.procs'"
        out = self.sh(
            host,
            f"for p in $(cat {procs} 2>/dev/null | sort -u); "
            "do echo $p $(cut -d' ' -f22 /proc/$p/stat 2>/dev/null); done",
        )
        return {(int(pid), start) for pid, start in (line.split() for line in out.splitlines()) if start}

    def alive(self, host, processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
        """Those of ``processes`` still running (the same pid and start time)."""
        out = self.sh(
            host, "for p in /proc/[0-9]*; do echo ${p#/proc/} $(cut -d' ' -f22 $p/stat 2>/dev/null); done"
        )
        now = {(int(pid), rest[0]) for pid, *rest in (line.split() for line in out.splitlines()) if rest}
        return processes & now

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

    def status(self, root: Path) -> tuple[dict, str]:
        """playbooks/status.yml: the JSON report and the table a person reads."""
        out = self.play(
            "playbooks/status.yml", "-e", f"wandb_agent_status_file={root / 'status.json'}"
        ).stdout
        return json.loads((root / "status.json").read_text()), out

    def finish(self, sweep, *rerun_args: str, failed: tuple[str, ...] = ()) -> None:
        """Wait for the sweep's end; rerun what crashed or failed; every value finished
        exactly once. The grid has completed, so the rerun is W&B's documented one
        (wandb_sweep_rerun_delete): it deletes exactly the runs that did not finish (W&B keeps
        no record of them; the stand-in flags them) and runs exactly their values again."""
        self.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=240, what="the sweep to finish")
        live = [r for r in self.standin.records(sweep.id) if not r["deleted"]]
        # A run as W&B shows it is its last attempt (a preempted run is requeued, same id).
        latest = {r["run_id"]: r for r in live}
        redo = [r for r in latest.values() if r["state"] != "finished"]
        if redo:
            self.wait_agents_down(sweep, failed)
            rerun = time.time()
            self.play(
                "playbooks/sweep.yml",
                "-e",
                "wandb_sweep_action=rerun",
                "-e",
                "wandb_sweep_rerun_delete=true",
                *rerun_args,
            )
            self.standin.wait_for(
                lambda s: sweep.state == "FINISHED", timeout=240, what="the rerun to finish"
            )
            records = self.standin.records(sweep.id)
            deleted = {r["run_id"] for r in records if r["deleted"]} - {
                r["run_id"] for r in live if r["deleted"]
            }
            assert deleted == {r["run_id"] for r in redo}, (
                "the rerun deleted other runs than those that did not finish"
            )
            again = collections.Counter(r["params"]["lr"] for r in records if r["start"] > rerun)
            assert again == collections.Counter(r["params"]["lr"] for r in redo), "other values ran again"
        records = [r for r in self.standin.records(sweep.id) if not r["deleted"]]
        finished = collections.Counter(
            r["params"]["lr"] for r in records if r["state"] == "finished" and r["exitcode"] == 0
        )
        assert finished == dict.fromkeys(sweep.config["parameters"]["lr"]["values"], 1), records
        assert not [r for r in records if r["state"] in ("running", "pending")], records

    def wait_agents_down(self, sweep, failed: tuple[str, ...] = ()) -> None:
        """Each agent learns of the end at its next heartbeat and ends well, without a
        restart since the sweep ended (a launcher that failed and was restarted into a
        clean end would also be inactive now); those of the hosts in ``failed`` had failed
        before: they stay so."""
        for host in self.hosts:
            wanted = "failed" if host.name in failed else "inactive"
            wait_until(
                lambda host=host, wanted=wanted: self.unit(host, "ActiveState")["ActiveState"] == wanted,
                timeout=90,
                what=f"{host.name}'s agent to end with the sweep ({wanted})",
            )
            if wanted == "inactive":
                restarts = self.sh(
                    host,
                    f"sudo journalctl -u 'wandb-agent@*' --since @{int(sweep.updated)} -o cat"
                    " | grep -c 'Scheduled restart job' || true",
                ).strip()
                assert restarts == "0", f"{host.name}'s agent was restarted after the sweep ended"


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
    old = site.unit_processes(host)
    assert int(before["MainPID"]) in {pid for pid, _ in old} and len(old) >= 3  # launcher, agent, run...
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
    assert site.alive(host, old) == set(), "a process of the killed agent outlived it"
    site.finish(sweep)


def test_a_killed_agents_run_stays_running_at_wandb_for_five_minutes_and_runs_again_once(site, tmp_path):
    """Fault 1 at W&B's own timing: the run of a SIGKILLed agent sends nothing more, and W&B
    keeps it running until its stale timeout (about five minutes) before it is crashed.
    Meanwhile the sweep goes on, status.yml and a drain stop work, a rerun touches nothing
    (the run may still be alive for all W&B knows); once crashed, its value runs once more."""
    site.standin.run_timeout = STALE_SECONDS  # W&B's own: the fixture's 20 s is for speed
    try:
        sweep = site.deploy("stale", [0.1, 0.05, 0.02, 0.01], epochs=6, epoch_seconds=1.5)
        host = site.hosts[0]
        victim = site.standin.wait_for(
            lambda s: next((r for r in site.running_on(sweep, host) if r["online"]), None),
            timeout=120,
            what=f"a run online on {host.name}",
        )
        pid = site.unit(host, "MainPID")["MainPID"]
        site.sh(host, f"sudo kill -KILL {pid}")
        killed = time.time()
        wait_until(
            lambda: (
                site.unit(host, "ActiveState", "MainPID") not in ({"ActiveState": "active", "MainPID": pid},)
                and site.unit(host, "ActiveState")["ActiveState"] == "active"
            ),
            timeout=60,
            what="systemd to restart the killed agent",
        )

        def orphan() -> dict:
            return next(r for r in site.standin.records(sweep.id) if r["run_id"] == victim["run_id"])

        # The other values finish; the sweep cannot, while W&B believes the run lives.
        others = set(sweep.config["parameters"]["lr"]["values"]) - {victim["params"]["lr"]}
        site.standin.wait_for(
            lambda s: {r["params"]["lr"] for r in s.records(sweep.id) if r["state"] == "finished"} == others,
            timeout=240,
            what="the other values to finish",
        )
        assert (orphan()["state"], sweep.state) == ("running", "RUNNING")
        # status.yml: no agent shows the orphan; the sweep counts it running.
        report, _table = site.status(tmp_path)
        assert not [run for row in report["agents"] for run in row["runs"] if run["id"] == victim["run_id"]]
        assert report["sweep"]["runs_by_state"].get("running") == 1, report["sweep"]
        # A rerun now runs nothing: W&B has not said the run is gone.
        check = site.play("playbooks/sweep.yml", "-e", "wandb_sweep_action=rerun", "--check")
        assert victim["run_id"] not in check.stdout
        assert [r for r in site.standin.records(sweep.id) if r["deleted"]] == []
        # A drain stop and a start while W&B still waits.
        site.play("playbooks/stop.yml")
        assert site.unit_processes(host) == set()
        site.play("playbooks/start.yml")
        assert orphan()["state"] == "running"
        # After W&B's stale timeout: crashed, then run again once (site.finish reruns it).
        site.standin.wait_for(
            lambda s: orphan()["state"] == "crashed", timeout=STALE_SECONDS + 120, what="W&B's stale timeout"
        )
        assert orphan()["end"] - killed >= STALE_SECONDS - 30, "crashed before W&B would have"
        site.finish(sweep)
    finally:
        site.standin.run_timeout = 20


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
    asked = len([r for r in site.standin.requests if r[2] == "CreateAgent"])
    host = site.reboot(site.hosts[0])
    wait_until(
        lambda: site.unit(host, "ExecMainExitTimestampMonotonic")["ExecMainExitTimestampMonotonic"] != "0",
        timeout=60,
        what="the agent started at boot to end",
    )
    first = site.unit(host, "ActiveState", "ExecMainStatus", "NRestarts", "ExecMainStartTimestampMonotonic")
    assert (first["ActiveState"], first["ExecMainStatus"], first["NRestarts"]) == ("inactive", "0", "0"), (
        first
    )
    # Watched for 20 s from now (more than wandb_agent_restart_sec): it stays down.
    watched, until = 0, time.monotonic() + 20
    while time.monotonic() < until:
        again = site.unit(host, "ActiveState", "NRestarts", "ExecMainStartTimestampMonotonic")
        assert again == {k: first[k] for k in again}, again
        watched += 1
        time.sleep(1)
    assert watched >= 10, "the agent was watched"
    # No agent even asked W&B to join (the stand-in would refuse it for an ended sweep, and
    # keep no agent: the requests are what tell).
    assert len([r for r in site.standin.requests if r[2] == "CreateAgent"]) == asked


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


def test_agents_ride_out_a_minute_of_wandb_outage_without_restarts_or_lost_runs(site, tmp_path):
    """Fault 4: W&B refuses connections for 30 s, then answers HTTP 500 for 30 s or more,
    while status.yml and a deploy are run."""
    # W&B marks a run crashed after minutes without a word from it; the fixture's 20 s
    # (for fault 1's speed) would call every run of a one-minute outage crashed.
    site.standin.run_timeout = 300
    try:
        # Runs of a minute: the outage is in the middle of them.
        sweep = site.deploy("outage", [0.1, 0.05, 0.02, 0.01], epochs=40, epoch_seconds=1.5)
        for host in site.hosts:
            site.standin.wait_for(
                lambda s, h=host: site.running_on(sweep, h), timeout=120, what="runs on each host"
            )
        before = {h.name: site.unit(h, "NRestarts", "ExecMainPID") for h in site.hosts}
        agents = len(site.standin.agents)

        def unchanged() -> None:  # every agent up all along, none restarted
            for host in site.hosts:
                now = site.unit(host, "ActiveState", "NRestarts", "ExecMainPID")
                assert now == {"ActiveState": "active", **before[host.name]}, (host.name, now)

        site.standin.inject("refuse", seconds=30)
        while site.standin.refusing:
            unchanged()
            time.sleep(2)
        site.standin.inject("http500")  # until cleared, at least 30 s from now
        back = time.time() + 30
        # status.yml in the outage: every host's agent and its run, the sweep unreachable.
        report, table = site.status(tmp_path)
        assert report["sweep"]["state"] == "UNREACHABLE" and f"sweep {sweep.path}: UNREACHABLE" in table
        rows = {row["host"]: row for row in report["agents"]}
        assert sorted(rows) == sorted(h.name for h in site.hosts), rows
        for host in site.hosts:
            running = {r["run_id"] for r in site.running_on(sweep, host)}
            assert {run["id"] for run in rows[host.name]["runs"]} == running != set(), (host.name, rows)
        # A deploy in the outage: the sweep module asks again with backoff, then fails
        # naming the address, before any agent is touched.
        failed = site.play("deploy.yml", "-e", "wandb_sweep_retry_seconds=5", check=False)
        assert failed.returncode != 0, failed.stdout[-3000:]
        said = " ".join(failed.stdout.split())  # the YAML result format may fold the message
        assert f"the W&B API at {site.standin.url} answered HTTP 500" in said, failed.stdout[-3000:]
        assert "retries)" in said and "TASK [wandb_agent" not in said, failed.stdout[-3000:]
        while time.time() < back:
            unchanged()
            time.sleep(2)
        unchanged()
        site.standin.clear_faults()
        site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=240, what="the sweep to finish")
        records = site.standin.records(sweep.id)
        # No run lost: every value finished exactly once without a rerun; no new agent.
        assert collections.Counter(
            r["params"]["lr"] for r in records if r["state"] == "finished"
        ) == dict.fromkeys(sweep.config["parameters"]["lr"]["values"], 1), records
        assert all(r["state"] == "finished" and r["exitcode"] == 0 for r in records), records
        assert len(site.standin.agents) == agents, "an agent was restarted"
        for host in site.hosts:
            assert site.unit(host, "NRestarts")["NRestarts"] == before[host.name]["NRestarts"]
        site.finish(sweep)
    finally:
        site.standin.clear_faults()
        site.standin.run_timeout = 20


def test_a_broken_node_stops_its_agent_and_shows_why_in_status(site, tmp_path):
    """Fault 6: every run on one host fails at once (its GPU is gone)."""
    good, bad = site.hosts
    broken = {"wandb_agent_environment": {"NODE_BROKEN": "1"}, "wandb_agent_max_consecutive_failures": 2}
    sweep = site.deploy("badnode", [0.1, 0.05, 0.02, 0.01, 0.005, 0.002], epochs=3, epoch_seconds=1.5,
                        host_vars={bad.name: broken})  # fmt: skip
    wait_until(
        lambda: site.unit(bad, "ActiveState")["ActiveState"] == "failed",
        timeout=120,
        what=f"the agent on the broken {bad.name} to give up",
    )
    state = site.unit(bad, "ExecMainStatus", "NRestarts")
    assert state == {"ExecMainStatus": "79", "NRestarts": "0"}, state  # given up, not restarted
    failed = [r for r in site.standin.records(sweep.id) if r["agent_host"] == bad.name]
    assert len(failed) == 2 and not [r for r in failed if r["state"] == "finished"], failed
    report, table = site.status(tmp_path)
    (row,) = [r for r in report["agents"] if r["host"] == bad.name]
    assert (row["active_state"], row["sub_state"]) == ("failed", "failed"), row
    last = max(failed, key=lambda r: r["start"])["run_id"]
    assert (
        f"2 failed runs in a row, the last {sweep.path.rsplit('/', 1)[0]}/{last}, while" in row["last_error"]
    ), row
    assert f"2 failed runs in a row, the last {sweep.path.rsplit('/', 1)[0]}/{last}, while" in table
    (other,) = [r for r in report["agents"] if r["host"] == good.name]
    assert other["active_state"] == "active", other  # the other host goes on
    # The other host takes the rest; the broken host's values run again there.
    site.finish(sweep, "--limit", good.name, failed=(bad.name,))
    assert site.unit(bad, "ActiveState")["ActiveState"] == "failed", "the broken host was started again"


def test_a_full_disk_stops_that_hosts_agent_and_nothing_else(site, tmp_path):
    """Fault 8: the filesystem of one host's runs fills up mid-sweep."""
    good, full = site.hosts
    runs = "/var/lib/sweep-fleet/runs"
    failed_before = set(site.sh(full, "systemctl --failed --plain --no-legend | cut -d' ' -f1").split())
    # The runs' directory on a small filesystem of its own (48 MB), as a data disk would be.
    mount = f"sudo mkdir -p {runs}; sudo mount -t tmpfs -o size=48m sweep-fleet-runs {runs}"
    site.sh(full, f"sudo systemctl stop 'wandb-agent@*'; {mount}")
    try:
        sweep = site.deploy("diskfull", [0.1, 0.05, 0.02, 0.01, 0.005, 0.002], epochs=6, epoch_seconds=1.5,
                            host_vars={full.name: {"wandb_agent_min_free_mb": 24}})  # fmt: skip
        site.standin.wait_for(
            lambda s: site.running_on(sweep, full), timeout=120, what=f"a run on {full.name}"
        )
        # Something (a run's checkpoints, a dataset cache) fills the filesystem.
        site.sh(full, f"sudo dd if=/dev/zero of={runs}/filler bs=1M status=none || true")
        wait_until(
            lambda: site.unit(full, "ActiveState")["ActiveState"] == "failed",
            timeout=120,
            what=f"the agent on {full.name} to stop on the full disk",
        )
        state = site.unit(full, "ExecMainStatus", "NRestarts")
        assert state == {"ExecMainStatus": "79", "NRestarts": "0"}, state  # stopped, not restarted
        report, table = site.status(tmp_path)
        (row,) = [r for r in report["agents"] if r["host"] == full.name]
        assert (row["active_state"], row["sub_state"]) == ("failed", "failed"), row
        journal = site.sh(full, "sudo journalctl -u wandb-agent@1 -n 40 -o cat --no-pager")
        assert re.search(
            rf"error: disk full: {runs}/1 has \d+ MB free, less than the 24 MB", row["last_error"]
        ), (row, journal)
        assert "disk full" in table
        # Nothing else on the host broke (ssh and Ansible work: status ran); the other host went on.
        failed_after = set(site.sh(full, "systemctl --failed --plain --no-legend | cut -d' ' -f1").split())
        assert failed_after == failed_before | {"wandb-agent@1.service"}, failed_after
        (other,) = [r for r in report["agents"] if r["host"] == good.name]
        assert other["active_state"] == "active", other
        site.standin.wait_for(
            lambda s: sweep.state == "FINISHED", timeout=240, what="the other host to finish"
        )
        # Space freed, the agent started again: it sees the finished sweep and stays down.
        site.sh(full, f"sudo rm {runs}/filler")
        site.play("playbooks/start.yml", "--limit", full.name)
        site.finish(sweep)
    finally:
        site.sh(full, f"sudo systemctl stop 'wandb-agent@*'; sudo rm -f {runs}/filler; sudo umount {runs}")


def interrupted(site, until, what: str) -> str:
    """Run deploy.yml and press Ctrl-C (SIGINT to its process group) once ``until(output)``;
    return the output. The run must end by the interrupt, not by itself."""
    proc = subprocess.Popen(
        playbook_command("deploy.yml", site.inventory, "-e", f"@{site.vars}"),
        cwd=REPO,
        # Ansible leaves flushing to the system: into a pipe its lines would come in 8 KB
        # blocks, late, and the interrupt with them.
        env=ansible_env(PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: until("".join(lines)) or proc.poll() is not None, timeout=300, what=what)
        assert proc.poll() is None, f"deploy.yml ended before {what}:\n" + "".join(lines)[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            # Ansible can lose a Ctrl-C: when it lands just as a worker is forked, its handler's
            # KeyboardInterrupt is raised inside Python's at-fork hook, which ignores it
            # ("Exception ignored in ... _releaseLock"), and the play goes on (see
            # ansible/ansible#86078). That handler has already put SIGINT back to the default, so
            # a second Ctrl-C, as a user would press it, ends the run.
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(timeout=120)
        assert code != 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=10)
    return "".join(lines)


def test_an_interrupted_deploy_is_converged_by_the_next_without_a_second_sweep(site):
    """Fault 7: Ctrl-C on the controller while W&B creates the sweep, during the installs on a
    new host, while its key is written, and while its units are written; the next deploy.yml
    converges."""
    (fresh,) = site.fleet.add(1)
    site.hosts = site.fleet.hosts()
    site.fleet.write_inventory(site.inventory)
    # The hashes of the key, settings and units, and the names in their directories.
    files = (
        "sudo sh -c 'cd /etc && sha256sum sweep-fleet/* systemd/system/wandb-agent* 2>/dev/null;"
        " ls -a sweep-fleet systemd/system 2>/dev/null; true'"
    )
    lrs = [0.1, 0.05, 0.02, 0.01, 0.005, 0.002]

    def mine(standin):
        return [s for s in standin.sweeps.values() if s.config.get("name") == "interrupted"]

    try:
        site.write_vars("interrupted", lrs, epochs=3, epoch_seconds=1)
        seen = []
        # 1: W&B has the create request, its answer is not back yet; W&B then makes the sweep
        # (the sweep comes first in deploy.yml, before any host is touched).
        site.standin.inject("delay", operation="UpsertSweep", seconds=8)
        asked = len(site.standin.requests)
        interrupted(
            site,
            lambda out: any(r[2] == "UpsertSweep" for r in site.standin.requests[asked:]),
            "the sweep's create request",
        )
        site.standin.clear_faults()
        site.standin.wait_for(mine, timeout=30, what="W&B to make the sweep it was asked for")
        assert site.unit(fresh, "ActiveState")["ActiveState"] != "active", "an agent started before its sweep"
        seen.append(site.sh(fresh, files))
        # 2: while uv installs wandb into the new host's venv.
        interrupted(
            site,
            lambda out: (
                "TASK [wandb_runtime : Make the venv" in out
                and "pip install" in site.sh(fresh, "pgrep -a -f '[u]v pip install' || true")
            ),
            "uv installing on the new host",
        )
        seen.append(site.sh(fresh, files))
        # 3: as the key and connection settings are written.
        interrupted(
            site, lambda out: "TASK [wandb_credentials : Write the key" in out, "the key being written"
        )
        seen.append(site.sh(fresh, files))
        # 4: as the agents' units and settings are written.
        interrupted(site, lambda out: "TASK [wandb_agent : Run the agents]" in out, "the units being written")
        seen.append(site.sh(fresh, files))
        again = site.play("deploy.yml")
        assert len(mine(site.standin)) == 1, site.standin.sweep_summary()  # never a second sweep
        (sweep,) = mine(site.standin)
        final = site.sh(fresh, files)
        # Never a half-written file: after each interrupt, each file was absent or already whole,
        # and no temporary file was left.
        for listing in seen:
            assert set(listing.splitlines()) <= set(final.splitlines()), (listing, final)
        for host in site.hosts:
            assert site.unit(host, "ActiveState")["ActiveState"] == "active", host.name
        assert changed_tasks(site.play("deploy.yml").stdout) == [], "the converged fleet changed again"
        assert "TASK [wandb_sweep : Find the sweep" in again.stdout
        site.finish(sweep)
    finally:
        site.standin.clear_faults()
        site.fleet.remove_host(fresh)
        site.hosts = site.fleet.hosts()
        site.fleet.write_inventory(site.inventory)
