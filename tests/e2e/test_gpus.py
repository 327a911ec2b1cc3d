"""GPU hosts on the test fleet: agents find their GPUs, keep to them, and share politely.

The test hosts have no GPU. Each gets the tests' stand-in ``nvidia-smi``
(tests/programs/nvidia_smi.py), which reports the GPUs the test describes and the processes
that hold memory on them, and device nodes made with mknod where the container allows it.
The agents, their launcher and the runs are the real ones (the real wandb agent); the runs
(tests/programs/gpu_job.py) tell the stand-in driver which GPUs they compute on.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from fleet import gpus
from standin import StandIn
from support import REPO, TEST_API_KEY, changed_tasks, fleet_vars, run_playbook, wait_until

pytestmark = pytest.mark.fleet

PROGRAMS = REPO / "tests" / "programs"
FOUR = gpus.four()
UUIDS = [g["uuid"] for g in FOUR]
ONE = [{"uuid": "GPU-b1e2c3d4-0000-4000-8000-00000000000b", "bus_id": "00000000:65:00.0", "minor": 0,
        "memory_total": 24576, "util": 99}]  # fmt: skip
OTHER_USER = "researcher"  # a user of the test image, with no login session


class GpuSite:
    def __init__(self, fleet, standin: StandIn, root: Path):
        self.fleet, self.standin = fleet, standin
        self.a, self.b = fleet.hosts()
        self.inventory = fleet.write_inventory(root / "inventory" / "hosts.ini")
        self.host_vars = root / "inventory" / "host_vars"
        self.vars = root / "vars.yml"
        self.code = root / "code"
        self.code.mkdir()
        shutil.copy(PROGRAMS / "gpu_job.py", self.code / "gpu_job.py")
        for host in (self.a, self.b):
            gpus.install(fleet, host)

    def sh(self, host, command: str, input: str | None = None, check: bool = True) -> str:
        return self.fleet.ssh(host, command, input=input, check=check).stdout

    def set_gpus(self, host, described: list[dict]) -> None:
        gpus.set_gpus(self.fleet, host, described)

    def no_gpus(self, host) -> None:
        gpus.no_gpus(self.fleet, host)

    def write_vars(self, name: str, values: int, seconds: float, host_vars: dict, **extra) -> None:
        shutil.rmtree(self.host_vars, ignore_errors=True)
        self.host_vars.mkdir(parents=True)
        for host, own in host_vars.items():
            (self.host_vars / f"{host.name}.yml").write_text(yaml.safe_dump(own))
        self.vars.write_text(
            yaml.safe_dump(
                fleet_vars(
                    self.standin,
                    wandb_code_local_path=str(self.code),
                    wandb_sweep_project="gpus",
                    wandb_sweep_name=name,
                    wandb_sweep_program="gpu_job.py",
                    wandb_sweep_parameters={"x": {"values": list(range(values))}},
                    wandb_agent_environment={"JOB_SECONDS": str(seconds)},
                    wandb_agent_stagger_seconds=0.5,
                    **extra,
                )
            )
        )

    def play(self, playbook: str, *args: str, check: bool = True):
        return run_playbook(REPO / playbook, self.inventory, "-e", f"@{self.vars}", *args, check=check)

    def sweep(self, name: str):
        (sweep,) = [s for s in self.standin.sweeps.values() if s.config.get("name") == name]
        return sweep

    def units(self, host) -> dict[str, str]:
        """Each agent unit's ActiveState."""
        out = self.sh(host, "systemctl show 'wandb-agent@*' --all -p Id,ActiveState --value")
        values = out.split()
        return dict(zip(values[0::2], values[1::2], strict=True))

    def env(self, host, instance: int) -> dict[str, str]:
        text = self.sh(host, f"sudo cat /etc/sweep-fleet/agent-{instance}.env")
        return dict(
            line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
        )

    def device_allow(self, host, instance: int) -> list[str]:
        out = self.sh(
            host, f"systemctl show -p DevicePolicy -p DeviceAllow -p PrivateDevices wandb-agent@{instance}"
        )
        return out.split("\n")

    def journal(self, host, instance: int) -> str:
        return self.sh(host, f"sudo journalctl -u wandb-agent@{instance} --no-pager -o cat")


@pytest.fixture(scope="module")
def site(make_fleet, tmp_path_factory):
    fleet = make_fleet(2)
    standin = StandIn(host=fleet.gateway(), api_key=TEST_API_KEY).start()
    yield GpuSite(fleet, standin, tmp_path_factory.mktemp("gpus"))
    standin.stop()


def test_auto_runs_one_agent_per_gpu_pinned_by_uuid_and_each_opens_only_its_own(site):
    site.set_gpus(site.a, FOUR)
    site.set_gpus(site.b, ONE)
    auto = {"wandb_agent_gpus": "auto"}
    site.write_vars("gpu-auto", values=10, seconds=1, host_vars={site.a: auto, site.b: auto})
    site.play("deploy.yml")
    assert sorted(site.units(site.a)) == [f"wandb-agent@{n}.service" for n in range(1, 5)]
    assert sorted(site.units(site.b)) == ["wandb-agent@1.service"]
    shown = []
    for n in range(1, 5):
        env = site.env(site.a, n)
        assert (env["CUDA_VISIBLE_DEVICES"], env["CUDA_DEVICE_ORDER"]) == (UUIDS[n - 1], "PCI_BUS_ID")
        allowed = site.device_allow(site.a, n)
        shown.append(f"wandb-agent@{n}: " + " ".join(allowed))
        assert "DevicePolicy=closed" in allowed and "PrivateDevices=no" in allowed
        devices = [x.split("=", 1)[1] for x in allowed if x.startswith("DeviceAllow=")]
        # ProtectClock= adds the real-time clock, read-only (systemd.exec(5)).
        assert sorted(devices) == sorted(
            ["char-rtc r", "/dev/nvidiactl rw", "/dev/nvidia-uvm rw", f"/dev/nvidia{n - 1} rw"]
        )
    print("\n".join(shown))
    assert site.env(site.b, 1)["CUDA_VISIBLE_DEVICES"] == ONE[0]["uuid"]

    sweep = site.sweep("gpu-auto")
    site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=240, what="the GPU sweep to finish")
    done = collections.Counter(
        r["params"]["x"] for r in site.standin.records(sweep.id) if r["state"] == "finished"
    )
    assert done == collections.Counter(range(10)), "each value ran once"
    # Each run saw its agent's GPU, by UUID, in bus order.
    for n in range(1, 5):
        seen = set(re.findall(r"^job x=\d+ on (\S+) order=(\S+)$", site.journal(site.a, n), re.MULTILINE))
        assert seen <= {(UUIDS[n - 1], "PCI_BUS_ID")}, seen
    # A re-run changes nothing.
    assert changed_tasks(site.play("deploy.yml").stdout) == []


def test_a_host_without_the_gpus_asked_for_is_refused_before_any_change_or_runs_cpu_agents(site):
    site.no_gpus(site.b)
    before = {h.name: site.sh(h, "sudo sh -c 'cat /etc/sweep-fleet/*.env /etc/systemd/system/wandb-agent*/*'")
              for h in (site.a, site.b)}  # fmt: skip
    cases = [
        ({site.a: {"wandb_agent_gpus": "auto"}, site.b: {"wandb_agent_gpus": "auto"}},
         "wandb_agent_gpus is auto but this host has no NVIDIA GPU (nvidia-smi failed: NVIDIA-SMI "
         "has failed because it couldn't communicate with the NVIDIA driver"),
        ({site.a: {"wandb_agent_gpus": [0, 7]}},
         "wandb_agent_gpus lists GPU 7, which this host does not have"),
        ({site.a: {"wandb_agent_gpus": ["all"]}}, "wandb_agent_gpus has 'all'"),
    ]  # fmt: skip
    for host_vars, message in cases:
        site.write_vars("gpu-refused", values=2, seconds=1, host_vars=host_vars)
        proc = site.play("deploy.yml", check=False)
        assert proc.returncode != 0 and message in proc.stdout, proc.stdout[-3000:]
        assert "TASK [wandb_runtime" not in proc.stdout, "a host was touched"
    assert not [s for s in site.standin.sweeps.values() if s.config.get("name") == "gpu-refused"]
    after = {h.name: site.sh(h, "sudo sh -c 'cat /etc/sweep-fleet/*.env /etc/systemd/system/wandb-agent*/*'")
             for h in (site.a, site.b)}  # fmt: skip
    assert after == before

    # By a variable, a host where auto finds no GPU runs CPU agents instead.
    site.write_vars(
        "gpu-cpu",
        values=2,
        seconds=1,
        host_vars={site.a: {"wandb_agent_gpus": "auto"}, site.b: {"wandb_agent_gpus": "auto"}},
        wandb_agent_gpus_missing="cpu",
    )
    site.play("deploy.yml")
    assert "CUDA_VISIBLE_DEVICES" not in site.env(site.b, 1)
    assert "PrivateDevices=yes" in site.device_allow(site.b, 1)
    site.standin.set_state(site.sweep("gpu-cpu").id, "CANCELED")


def test_gpus_that_move_or_go_change_the_units_and_each_agent_keeps_its_gpu(site):
    site.set_gpus(site.a, FOUR)
    site.write_vars("gpu-change", values=60, seconds=3, host_vars={site.a: {"wandb_agent_gpus": "auto"}})
    site.play("deploy.yml", "--limit", site.a.name)
    sweep = site.sweep("gpu-change")
    wait_until(lambda: all(v == "active" for v in site.units(site.a).values()), timeout=60, what="4 agents")

    # A reboot renumbered the device nodes (bus ids and UUIDs stay): an agent started now
    # refuses, since its unit may open only the node it had.
    renumbered = [{**g, "minor": 3 - g["minor"]} for g in FOUR]
    site.set_gpus(site.a, renumbered)
    site.sh(site.a, "sudo systemctl restart wandb-agent@1", check=False)
    wait_until(
        lambda: "is /dev/nvidia3 now, not /dev/nvidia0 as at the deploy" in site.journal(site.a, 1),
        timeout=60,
        what="the launcher to refuse a GPU that moved",
    )
    # The launcher logs before it exits: wait for the exit, then read its status.
    show = "systemctl show -p ExecMainStatus -p ActiveState wandb-agent@1"
    wait_until(
        lambda: re.search(r"ActiveState=(failed|inactive)", site.sh(site.a, show)),
        timeout=60,
        what="agent 1 to exit",
    )
    status = site.sh(site.a, show)
    assert "ExecMainStatus=78" in status, status
    assert "ActiveState=failed" in status, status
    # The next deploy follows the nodes; each agent keeps its GPU.
    again = site.play("deploy.yml", "--limit", site.a.name)
    assert set(changed_tasks(again.stdout)) <= {
        "wandb_agent : Write the agents' files",
        "wandb_agent : Run the agents",
    }
    for n in range(1, 5):
        assert site.env(site.a, n)["CUDA_VISIBLE_DEVICES"] == UUIDS[n - 1]
        assert f"/dev/nvidia{4 - n} rw" in " ".join(site.device_allow(site.a, n))
    wait_until(
        lambda: site.units(site.a).get("wandb-agent@1.service") == "active", timeout=60, what="agent 1"
    )

    # A GPU is gone: its agent is stopped and disabled; the others go on.
    site.set_gpus(site.a, renumbered[:3])
    site.play("deploy.yml", "--limit", site.a.name)
    units = site.units(site.a)
    assert units.get("wandb-agent@4.service", "inactive") == "inactive"
    assert [units[f"wandb-agent@{n}.service"] for n in (1, 2, 3)] == ["active"] * 3
    assert "wandb-agent@4" not in site.sh(site.a, "ls /etc/systemd/system/multi-user.target.wants/")
    site.standin.set_state(sweep.id, "CANCELED")


def test_a_polite_agent_takes_no_run_while_another_users_process_is_on_its_gpu_then_resumes(site):
    """A shared 4-GPU workstation: another user starts a job on GPU 1. Agent 2 (GPU 1)
    finishes its run and takes no new one; the other agents go on; nothing is killed. When
    the job ends, agent 2 takes runs again."""
    site.set_gpus(site.a, FOUR)
    polite = {"wandb_agent_gpus": "auto", "wandb_agent_gpu_share": "polite"}
    site.write_vars("gpu-polite", values=200, seconds=3, host_vars={site.a: polite})
    site.play("deploy.yml", "--limit", site.a.name)
    sweep = site.sweep("gpu-polite")

    def jobs(instance: int) -> int:
        return len(re.findall(r"^job x=", site.journal(site.a, instance), re.MULTILINE))

    wait_until(lambda: jobs(2) >= 1, timeout=120, what="agent 2 to run a job")
    pid = site.sh(site.a, f"sudo -u {OTHER_USER} sh -c 'sleep 900 >/dev/null 2>&1 & echo $!'").strip()
    held = json.dumps({"uuids": [UUIDS[1]], "memory": 20480})
    site.sh(site.a, f"sudo -u {OTHER_USER} tee /dev/shm/fake-nvidia/{pid}.json >/dev/null", input=held)
    try:
        wait_until(
            lambda: f"waiting: GPU 1 busy, pid {pid}, 20 GiB: no new run" in site.journal(site.a, 2),
            timeout=120,
            what="agent 2 to wait, its run finished",
        )
        assert not site.sh(site.a, "pgrep -u wandb-2 -f 'wandb agent' || true").strip(), (
            "agent 2 could take a run"
        )
        waiting_jobs, others = jobs(2), [jobs(n) for n in (1, 3, 4)]
        status = site.play("playbooks/status.yml").stdout
        print(status)
        assert f"waiting: GPU 1 busy, pid {pid} of {OTHER_USER}, 20 GiB" in status
        assert (
            f"GPU 1 memory held by pid {pid} of {OTHER_USER} (20 GiB), no agent's and no logged-in user's"
            in status
        )
        assert re.search(r"1:\d+% [\d.]+/80 GiB", status), status
        wait_until(
            lambda: [jobs(n) for n in (1, 3, 4)] > others, timeout=60, what="the other agents to go on"
        )
        assert jobs(2) == waiting_jobs, "agent 2 took a run while its GPU was busy"
        assert site.sh(site.a, f"ps -o user= -p {pid}").strip() == OTHER_USER, (
            "the other user's job was killed"
        )
    finally:
        site.sh(site.a, f"sudo kill {pid}; sudo rm -f /dev/shm/fake-nvidia/{pid}.json", check=False)
    wait_until(
        lambda: "the GPUs are free again: taking runs" in site.journal(site.a, 2) and jobs(2) > waiting_jobs,
        timeout=120,
        what="agent 2 to take runs again",
    )
    site.standin.set_state(sweep.id, "CANCELED")
