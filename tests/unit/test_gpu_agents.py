"""GPU agents: the plan of each host's agents from nvidia-smi's report, the rules for
wandb_agent_gpus, polite sharing in the launcher, and the GPU facts of status.yml.

nvidia-smi's report comes from the tests' stand-in (tests/programs/nvidia_smi.py), the one
the test hosts run too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from ansible_collections.sweep_fleet.wandb.plugins.filter.fleet_status import fleet_status_table
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import agent_host, inputs
from ansible_collections.sweep_fleet.wandb.plugins.modules import agent_info

from support import REPO, wait_until

sys.path.insert(0, str(REPO / "tests" / "programs"))
import nvidia_smi

sys.path.insert(0, str(REPO / "roles" / "wandb_agent" / "files"))
import sweep_fleet_agent as launcher

UUIDS = [f"GPU-{n}a1b2c3d-0000-1111-2222-33334444555{n}" for n in range(4)]
# Four GPUs; PCI bus ids out of minor order, as on boards whose slots the driver numbers
# differently from the bus.
FOUR = [
    {"uuid": UUIDS[0], "bus_id": "00000000:17:00.0", "minor": 0, "memory_total": 81920, "util": 97},
    {"uuid": UUIDS[1], "bus_id": "00000000:31:00.0", "minor": 1, "memory_total": 81920, "util": 88},
    {"uuid": UUIDS[2], "bus_id": "00000000:B1:00.0", "minor": 2, "memory_total": 81920, "util": 91},
    {"uuid": UUIDS[3], "bus_id": "00000000:CA:00.0", "minor": 3, "memory_total": 81920, "util": 90},
]


def probe(gpus, processes=(), rc=0) -> dict:
    return {"rc": rc, "stdout": nvidia_smi.report(list(gpus), list(processes)) if rc == 0 else ""}


def uuids_of(plan) -> list[list[str]]:
    return [[g["uuid"] for g in agent] for agent in plan]


def test_the_stand_in_report_reads_as_nvidia_smis():
    held = [{"pid": 4242, "uuids": [UUIDS[1]], "memory": 20480}]
    gpus = agent_host.parse_gpus(nvidia_smi.report(FOUR, held))
    assert [(g["index"], g["uuid"], g["minor"]) for g in gpus] == [(i, UUIDS[i], i) for i in range(4)]
    assert gpus[1]["bus_id"] == "00000000:31:00.0"
    assert gpus[1]["processes"] == [{"pid": 4242, "memory": 20480, "type": "C"}]
    assert (gpus[1]["memory_used"], gpus[1]["memory_total"], gpus[1]["util"]) == (20480, 81920, 88)
    assert (gpus[0]["memory_used"], gpus[0]["util"], gpus[0]["processes"]) == (0, 0, [])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        "<other/>",
        '<!DOCTYPE x [<!ENTITY a "aaaa">]><nvidia_smi_log>&a;</nvidia_smi_log>',
        "<nvidia_smi_log><gpu id='0'><uuid>not-a-uuid</uuid></gpu></nvidia_smi_log>",
        # What goes into the units must be what nvidia-smi prints: no line break in a bus id.
        f"<nvidia_smi_log><gpu id='00000000:17:00.0&#10;DeviceAllow=/dev/sda'><uuid>{UUIDS[0]}</uuid></gpu>"
        "</nvidia_smi_log>",
    ],
)
def test_what_is_not_a_report_is_refused(text):
    with pytest.raises(ValueError):
        agent_host.parse_gpus(text)


def test_auto_runs_one_agent_per_gpu_pinned_in_bus_order():
    plan, problem = inputs.gpu_plan("auto", 1, "fail", probe(FOUR))
    assert problem is None
    assert uuids_of(plan) == [[u] for u in UUIDS]
    assert [agent[0]["minor"] for agent in plan] == [0, 1, 2, 3]


def test_a_renumbering_keeps_each_agent_on_its_gpu_and_moves_only_the_device_node():
    """After a reboot the driver numbered the GPUs the other way round: indexes and
    /dev/nvidiaN changed, bus ids and UUIDs did not. Each agent keeps its GPU."""
    renumbered = [{**gpu, "minor": 3 - gpu["minor"]} for gpu in FOUR]
    before, _ = inputs.gpu_plan("auto", 1, "fail", probe(FOUR))
    after, problem = inputs.gpu_plan("auto", 1, "fail", probe(renumbered))
    assert problem is None and uuids_of(after) == uuids_of(before)
    assert [a[0]["minor"] for a in after] == [3, 2, 1, 0]


def test_gpus_per_agent_groups_them_for_multi_gpu_runs():
    plan, problem = inputs.gpu_plan("auto", 2, "fail", probe(FOUR))
    assert problem is None and uuids_of(plan) == [UUIDS[:2], UUIDS[2:]]
    plan, problem = inputs.gpu_plan("auto", 3, "fail", probe(FOUR))
    assert plan == [] and problem.startswith("wandb_agent_gpus_per_agent is 3 but this host has 4 GPUs")


@pytest.mark.parametrize("answer", [{"rc": 127, "stdout": ""}, probe([], rc=9), probe([])])
def test_auto_on_a_host_without_a_gpu_is_named_or_runs_cpu_agents(answer):
    plan, problem = inputs.gpu_plan("auto", 1, "fail", answer)
    assert plan == [] and problem.startswith("wandb_agent_gpus is auto but this host has no NVIDIA GPU")
    assert "wandb_agent_gpus_missing: cpu" in problem
    assert inputs.gpu_plan("auto", 1, "cpu", answer) == ([], None)


def test_an_explicit_list_keeps_working_and_is_pinned_by_uuid():
    plan, problem = inputs.gpu_plan(["0", "1,2", UUIDS[3].lower()], 1, "fail", probe(FOUR))
    assert problem is None and uuids_of(plan) == [[UUIDS[0]], [UUIDS[1], UUIDS[2]], [UUIDS[3]]]


def test_a_gpu_the_host_does_not_have_is_named():
    plan, problem = inputs.gpu_plan(["0", "7"], 1, "fail", probe(FOUR))
    assert plan == []
    assert problem.startswith(
        "wandb_agent_gpus lists GPU 7, which this host does not have (nvidia-smi lists 0 ("
    )
    plan, problem = inputs.gpu_plan(["0"], 1, "fail", {"rc": 127, "stdout": ""})
    assert problem.startswith(
        "wandb_agent_gpus is a list but this host has no NVIDIA GPU (nvidia-smi is not there)"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["all"], "wandb_agent_gpus has 'all': an entry names GPUs by index or UUID"),
        (["0,auto"], "wandb_agent_gpus has '0,auto'"),
        ("everything", "wandb_agent_gpus is 'everything': give auto"),
        ({"a": 1}, "wandb_agent_gpus must be auto or a list of GPU ids"),
    ],
)
def test_wrong_gpu_entries_are_refused_by_name(value, message):
    found = list(inputs.agent_rules(inputs.Values({"wandb_agent_gpus": value, "wandb_agent_count": 1}, None)))
    assert any(m.startswith(message) for m in found), found


def test_per_agent_and_busy_memory_are_checked():
    values = {"wandb_agent_gpus": "auto", "wandb_agent_gpus_per_agent": 0, "wandb_agent_gpu_busy_mib": -1}
    found = list(inputs.agent_rules(inputs.Values(values, None)))
    assert any(m.startswith("wandb_agent_gpus_per_agent must be at least 1") for m in found), found
    assert any(m.startswith("wandb_agent_gpu_busy_mib must be at least 0") for m in found), found


# -- polite sharing ------------------------------------------------------------------
def test_only_a_process_outside_the_agent_makes_its_gpu_busy():
    held = [
        {"pid": 4242, "uuids": [UUIDS[1]], "memory": 20480},
        {"pid": 77, "uuids": [UUIDS[0]], "memory": 512},
    ]
    gpus = agent_host.parse_gpus(nvidia_smi.report(FOUR, held))
    assert agent_host.gpu_busy(gpus, [UUIDS[1]], mine=lambda pid: False) == "GPU 1 busy, pid 4242, 20 GiB"
    assert agent_host.gpu_busy(gpus, [UUIDS[1]], mine=lambda pid: pid == 4242) is None
    assert agent_host.gpu_busy(gpus, [UUIDS[2], UUIDS[3]], mine=lambda pid: False) is None
    # A memory threshold counts what others hold there beyond the processes listed.
    gpus[2]["memory_used"] = 30 * 1024
    assert agent_host.gpu_busy(gpus, [UUIDS[2]], mine=lambda pid: False, busy_mib=16384) == (
        "GPU 2 busy, 30 GiB held outside this agent"
    )
    assert agent_host.gpu_busy(gpus, [UUIDS[2]], mine=lambda pid: False, busy_mib=40960) is None


def test_a_gpu_that_moved_since_the_deploy_stops_the_agent_from_starting():
    gpus = agent_host.parse_gpus(nvidia_smi.report(FOUR, []))
    assert launcher.gpus_moved(f"{UUIDS[1]}=1", gpus) is None
    assert (
        launcher.gpus_moved(f"{UUIDS[1]}=2", gpus)
        == f"GPU {UUIDS[1]} is /dev/nvidia1 now, not /dev/nvidia2 as at the deploy"
    )
    assert "is not visible to this agent" in launcher.gpus_moved("GPU-ffffffff-0000=0", gpus)
    assert launcher.gpus_moved(f"{UUIDS[1]}=1", None) is None  # no report: nothing to compare


@pytest.fixture
def fake_agent(tmp_path):
    """A fake `wandb agent` whose run lasts two seconds and which takes no new run on SIGINT."""
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: open(sys.argv[1] + '/drained', 'w').close())\n"
        "run = subprocess.Popen(['sleep', '2'], process_group=0)\n"
        "open(sys.argv[1] + '/run.pid', 'w').write(str(run.pid))\n"
        "run.wait()\n"
    )
    supervisors = []
    yield (
        lambda: (
            supervisors.append(launcher.Supervisor([sys.executable, "-c", script, str(tmp_path)], 5))
            or (supervisors[-1])
        )
    )
    for supervisor in supervisors:
        if supervisor.agent is not None and supervisor.agent.poll() is None:
            supervisor.agent.kill()


def test_a_polite_agent_lets_its_run_finish_then_waits_until_the_gpu_is_free(
    fake_agent, tmp_path, monkeypatch
):
    """Another user's process (here pid 1: another cgroup) appears on the agent's GPU while a
    run goes on: the agent takes no new run, the run is not signalled, and the launcher then
    waits, starting the agent again once the process has left."""
    held: list[dict] = []
    monkeypatch.setattr(launcher, "GPU_CHECK_SECONDS", 0.1)
    monkeypatch.setattr(
        launcher.host, "read_gpus", lambda: agent_host.parse_gpus(nvidia_smi.report(FOUR, held))
    )
    supervisor = fake_agent()
    supervisor.share_gpus([UUIDS[1]], 0)
    supervisor.start()
    wait_until(lambda: (tmp_path / "run.pid").exists(), timeout=10, what="the fake agent's run")
    # The agent's own processes are its: its run on the GPU keeps it free.
    held.append({"pid": supervisor.agent.pid, "uuids": [UUIDS[1]], "memory": 1024})
    assert supervisor.gpus_busy() is None
    held.append({"pid": 1, "uuids": [UUIDS[1]], "memory": 20480})
    assert supervisor.wait() == 0
    assert supervisor.gpu_wait == "GPU 1 busy, pid 1, 20 GiB"
    assert (tmp_path / "drained").exists(), "the agent was not told to take no new run"
    assert not launcher.host.alive(int((tmp_path / "run.pid").read_text())), "the run did not end by itself"
    held.pop(0)  # the agent has ended: the driver lists it no more

    checks = []

    def wait(seconds, stopping):
        checks.append(seconds)
        held.pop()  # the other user's process leaves

    assert launcher.wait_for_gpus(supervisor, stopping=lambda: False, wait=wait) is True
    assert checks == [0.1], "the launcher did not wait while the GPU was busy"
    supervisor.again()
    assert supervisor.gpu_wait is None and supervisor.gpus_busy() is None


def test_the_agents_own_processes_are_those_in_its_cgroup(monkeypatch):
    cgroups = {100: "/system.slice/wandb-agent@2.service", 200: "/system.slice/wandb-agent@1.service"}
    monkeypatch.setattr(launcher.host, "cgroup_of", lambda pid: cgroups.get(pid, ""))
    supervisor = launcher.Supervisor([], 5)
    cgroups["self"] = cgroups[100]
    supervisor.share_gpus([UUIDS[0]], 0)
    # Another agent's run, and a process hidden from this agent (another user's), are not its.
    assert [supervisor.mine(pid) for pid in (100, 200, 300)] == [True, False, False]


def test_a_stop_ends_the_wait_for_a_busy_gpu(monkeypatch):
    monkeypatch.setattr(
        launcher.host,
        "read_gpus",
        lambda: agent_host.parse_gpus(
            nvidia_smi.report(FOUR, [{"pid": 1, "uuids": [UUIDS[0]], "memory": 1}])
        ),
    )
    supervisor = launcher.Supervisor([], 5)
    supervisor.share_gpus([UUIDS[0]], 0)
    asked = []
    assert (
        launcher.wait_for_gpus(supervisor, stopping=lambda: bool(asked), wait=lambda *_: asked.append(1))
        is False
    )


# -- status ------------------------------------------------------------------------
def test_status_shows_each_agents_gpus_a_waiting_agent_and_orphaned_gpu_memory():
    """A 4-GPU host: agents 1, 3 and 4 run; agent 2 waits for another user's process on its
    GPU; a process of no agent and no logged-in user holds memory on GPU 3."""
    leftover = subprocess.Popen(["sleep", "60"])
    try:
        held = [
            {"pid": 1, "uuids": [UUIDS[1]], "memory": 20480},
            {"pid": leftover.pid, "uuids": [UUIDS[3]], "memory": 12288},
        ]
        gpus = agent_host.parse_gpus(nvidia_smi.report(FOUR, held))
        agents = [
            {"instance": str(n + 1), "_uuids": [UUIDS[n]], "_polite": True, "_busy_mib": 0} for n in range(4)
        ]
        orphans = agent_info.gpu_report(gpus, agents, sessions=set())
        user = agent_info._user(os.getuid())
        assert agents[1]["waiting"] == f"GPU 1 busy, pid 1 of {agent_info._user(0)}, 20 GiB"
        assert [a["waiting"] for a in agents[::2]] == ["", ""]
        assert agents[3]["waiting"] == f"GPU 3 busy, pid {leftover.pid} of {user}, 12 GiB"
        assert agents[0]["gpus"] == [
            {"index": 0, "uuid": UUIDS[0], "util": 0, "memory_used": 0, "memory_total": 81920}
        ]
        assert [(o["pid"], o["user"], o["gpu"], o["memory"]) for o in orphans] == [
            (1, agent_info._user(0), 1, 20480),
            (leftover.pid, user, 3, 12288),
        ]
        # The owner has a login session: the process is theirs, not an orphan.
        assert [o["pid"] for o in agent_info.gpu_report(gpus, [], sessions={0, os.getuid()})] == []
    finally:
        leftover.send_signal(signal.SIGKILL)
        leftover.wait()


def test_the_table_shows_gpus_waiting_and_orphans():
    report = {
        "agents": [
            {
                "host": "ws-1",
                "instance": "1",
                "active_state": "active",
                "sub_state": "running",
                "runs": [],
                "gpus": [{"index": 1, "util": 0, "memory_used": 20480, "memory_total": 81920}],
                "waiting": "GPU 1 busy, pid 4242 of alice, 20 GiB",
            }
        ],
        "gpu_orphans": [
            {
                "host": "ws-1",
                "pid": 777,
                "user": "bob",
                "gpu": 3,
                "size": "12 GiB",
                "command": "python old.py",
            }
        ],
    }
    lines = fleet_status_table(report).splitlines()
    assert "waiting: GPU 1 busy, pid 4242 of alice, 20 GiB" in lines[1]
    assert "1:0% 20/80 GiB" in lines[1]
    assert lines[2] == (
        "ws-1: GPU 3 memory held by pid 777 of bob (12 GiB), no agent's and no logged-in user's: "
        "python old.py"
    )
