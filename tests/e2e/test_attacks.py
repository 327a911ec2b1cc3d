"""Runs as attackers: a training script that turns on its neighbours, on root and on the cloud.

One test host with two agents (three for the config-file attacks), the W&B stand-in and
the real wandb agent. The sweep's program is tests/programs/hostile.py: each of its runs
tries one attack and prints what came of each try. Root's own tools (status.yml, stop.yml)
must keep working whatever a run did to the files root reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fleet.fleet import podman
from standin import StandIn
from support import REPO, TEST_API_KEY, recap, run_playbook, wait_until

pytestmark = pytest.mark.fleet

HOSTILE = REPO / "tests" / "programs" / "hostile.py"
ATTACK_DIR = "/var/lib/sweep-fleet/attack"


class Site:
    def __init__(self, fleet, standin: StandIn, root: Path):
        self.fleet, self.standin, self.root = fleet, standin, root
        (self.host,) = fleet.hosts()
        self.inventory = fleet.write_inventory(root / "hosts.ini")
        self.vars = root / "vars.yml"
        self.code = root / "code"
        self.code.mkdir()
        shutil.copy(HOSTILE, self.code / "main.py")

    def sweep(self, name: str, attacks: list[str], **extra) -> object:
        """Deploy a sweep over these attacks; return it once the deploy is done."""
        self.sh(f"sudo rm -rf {ATTACK_DIR} && sudo install -d -m 0755 {ATTACK_DIR}")
        values = {
            "wandb_credentials_base_url": self.standin.url,
            "wandb_credentials_api_key": TEST_API_KEY,
            "wandb_runtime_uv_source": "controller",
            "wandb_code_local_path": str(self.code),
            "wandb_sweep_project": "attacks",
            "wandb_sweep_name": name,
            "wandb_sweep_program": "main.py",
            "wandb_sweep_parameters": {"attack": {"values": attacks}},
            "wandb_agent_count": 2,
            "wandb_agent_stagger_seconds": 0.5,
            "wandb_agent_term_timeout": 10,
            "wandb_agent_min_free_mb": 0,
            **extra,
        }
        self.vars.write_text(yaml.safe_dump(values))
        self.play("deploy.yml")
        (sweep,) = [s for s in self.standin.sweeps.values() if s.config.get("name") == name]
        return sweep

    def play(self, playbook: str, *args: str, timeout: float = 1200):
        return run_playbook(REPO / playbook, self.inventory, "-e", f"@{self.vars}", *args, timeout=timeout)

    def sh(self, command: str) -> str:
        return self.fleet.ssh(self.host, command).stdout

    def mark(self) -> str:
        """The host journal's position now: attacks(after=...) reads what comes later. (A
        time has whole seconds: a line printed in the same second as the mark would count.)"""
        out = self.sh("sudo journalctl -n 0 --show-cursor --no-pager -o cat")
        return out.strip().removeprefix("-- cursor: ")

    def attacks(self, after: str = "") -> dict[str, dict]:
        """What each run printed (after the journal position ``after``), by attack."""
        limit = f"--after-cursor '{after}' " if after else ""
        out = self.sh(
            f"sudo journalctl {limit}-u 'wandb-agent@*' -o cat --no-pager | grep '^ATTACK ' || true"
        )
        found = [json.loads(line[len("ATTACK ") :]) for line in out.splitlines()]
        return {entry["attack"]: entry["results"] for entry in found}

    def runs(self) -> list[tuple[str, str]]:
        """The running runs: (the user that runs it, its attack)."""
        out = self.sh("ps -eo user:20=,args= | grep '[m]ain.py --attack' || true")
        return [(line.split()[0], line.split("--attack=")[1].split()[0]) for line in out.splitlines()]

    def unit(self, instance: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show wandb-agent@{instance} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def site(make_fleet, tmp_path_factory):
    fleet = make_fleet(1)
    standin = StandIn(host=fleet.gateway(), api_key=TEST_API_KEY).start()
    yield Site(fleet, standin, tmp_path_factory.mktemp("attacks"))
    standin.stop()


def test_a_run_cannot_touch_the_agent_next_door_nor_the_code_links(site):
    sweep = site.sweep("neighbour", ["neighbour", "hold"])
    wait_until(lambda: len(site.runs()) == 2, timeout=120, what="a run on each agent")
    targets = {}
    for instance in ("1", "2"):
        launcher = int(site.unit(instance, "MainPID")["MainPID"])
        agent = int(site.sh(f"pgrep -P {launcher} -f 'wandb agent'").split()[0])
        targets[instance] = {
            "launcher": launcher,
            "agent": agent,
            "work": f"/var/lib/sweep-fleet/runs/{instance}",
            "cache": f"/var/cache/sweep-fleet/{instance}",
        }
    before = {i: site.unit(i, "MainPID", "NRestarts") for i in ("1", "2")}
    site.fleet.ssh(site.host, f"sudo tee {ATTACK_DIR}/targets.json >/dev/null", input=json.dumps(targets))
    results = wait_until(lambda: site.attacks().get("neighbour"), timeout=120, what="the attack's report")
    print(json.dumps(results, indent=1))
    assert len(results) == 8 and all(r.startswith("refused") for r in results.values()), results
    assert {i: site.unit(i, "MainPID", "NRestarts") for i in ("1", "2")} == before, "both agents live on"
    for instance in ("1", "2"):
        work = f"/var/lib/sweep-fleet/runs/{instance}"
        link = site.sh(f"sudo stat -c '%U %N' {work}/main.py").strip()
        assert link == f"root '{work}/main.py' -> '/opt/sweep-fleet/code/main.py'", link
        assert site.sh(f"sudo ls {work} /var/cache/sweep-fleet/{instance}").count("planted") == 0
    # The code (local, made by the push itself): root's, readable by the agents' group only.
    assert site.sh("sudo stat -c '%U %G %a' /opt/sweep-fleet/code").split() == ["root", "wandb", "2750"]
    site.sh(f"sudo touch {ATTACK_DIR}/release")
    site.standin.wait_for(
        lambda s: {r["state"] for r in s.records(sweep.id)} == {"finished"} and len(s.records(sweep.id)) == 2,
        timeout=120,
        what="both runs to finish",
    )


def test_status_and_stop_finish_whatever_a_run_made_of_its_config_file(site):
    """Root reads each running run's config-RUN.yaml: a FIFO would hang it, /dev/zero or an
    alias bomb would exhaust its memory. Each is read as a small regular file or not at all."""
    mark = site.mark()
    sweep = site.sweep("config", ["fifo", "zero", "bomb"], wandb_agent_count=3)
    wait_until(
        lambda: len(site.runs()) == 3 and len(site.attacks(mark)) == 3, timeout=180, what="three attacks"
    )
    assert all(r == "done" for a in site.attacks(mark).values() for r in a.values()), site.attacks(mark)
    running = {r["run_id"] for r in site.standin.records(sweep.id) if r["end"] is None}
    assert len(running) == 3
    started = time.monotonic()
    status = site.play("playbooks/status.yml", timeout=120)  # about 7 s here
    print(f"status.yml: {time.monotonic() - started:.1f}s")
    assert all(run in status.stdout for run in running), status.stdout[-3000:]
    assert "attack=" not in status.stdout, "no parameters read from what the runs put there"
    started = time.monotonic()
    stop = site.play("playbooks/stop.yml", "-e", "wandb_agent_stop_mode=preempt", timeout=120)  # about 11 s
    print(f"stop.yml: {time.monotonic() - started:.1f}s")
    assert recap(stop.stdout)[site.host.name]["failed"] == 0
    assert site.runs() == []


def test_runs_cannot_reach_the_cloud_metadata_address_unless_allowed(site):
    """A listener on 169.254.169.254 inside the test host's own network namespace stands for
    a cloud's instance metadata service; root on the host reaches it, the runs may not."""
    pid = podman("inspect", "-f", "{{.State.Pid}}", site.host.container).stdout.strip()
    subprocess.run(
        ["nsenter", "-t", pid, "-n", "ip", "addr", "replace", "169.254.169.254/32", "dev", "lo"], check=True
    )
    site.sh(
        "sudo systemd-run --unit metadata-standin -p ProtectSystem=strict /usr/bin/python3 -m http.server "
        "--bind 169.254.169.254 80"
    )
    wait_until(
        lambda: (
            site.fleet.ssh(site.host, "curl -s -m 2 http://169.254.169.254/", check=False).returncode == 0
        ),
        timeout=30,
        what="the metadata stand-in answering root",
    )
    mark = site.mark()
    site.sweep("metadata", ["metadata"])
    assert set(site.unit("1", "IPAddressDeny")["IPAddressDeny"].split()) == {"169.254.0.0/16", "fe80::/10"}
    results = wait_until(lambda: site.attacks(mark).get("metadata"), timeout=120, what="the run's try")
    assert results["connect"].startswith("refused"), results
    # A host that needs it (its resolver lives there) opens it with wandb_agent_ip_allow.
    mark = site.mark()
    site.sweep("metadata-allowed", ["metadata"], wandb_agent_ip_allow=["169.254.169.254"])
    assert site.unit("1", "IPAddressAllow")["IPAddressAllow"] == "169.254.169.254/32"
    results = wait_until(lambda: site.attacks(mark).get("metadata"), timeout=120, what="the run's try")
    assert results["connect"] == "done" and "HTTP/1.0" in results["answer"], results
    site.sh("sudo systemctl stop metadata-standin")
