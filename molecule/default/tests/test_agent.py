"""wandb_agent: hardened template units, each run by a launcher as its own user, key out of sight."""

import os
import re

import pytest

KEY = os.environ["STANDIN_API_KEY"]
UNITS = ["wandb-agent@1.service", "wandb-agent@2.service"]


@pytest.mark.parametrize("unit", UNITS)
def test_agents_run_and_start_at_boot(host, unit):
    service = host.service(unit)
    if not service.is_running:
        print(host.run(f"journalctl -u {unit} --no-pager | tail -40").stdout)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("unit", UNITS)
def test_unit_properties(host, unit):
    props = host.service(unit).systemd_properties
    instance = unit.split("@")[1].split(".")[0]
    assert (props["User"], props["Group"]) == (f"wandb-{instance}", f"wandb-{instance}")
    assert props["SupplementaryGroups"] == "wandb", "the group that may read the code"
    assert props["ReadWritePaths"] == f"/var/lib/sweep-fleet/runs/{instance}", "its own directory only"
    assert set(props["IPAddressDeny"].split()) == {"169.254.0.0/16", "fe80::/10"}
    assert props["Environment"].split().count(f"HOME=/var/cache/sweep-fleet/{instance}") == 1
    assert props["KillMode"] == "mixed"
    assert props["KillSignal"] == "15"
    assert props["Restart"] == "on-failure"
    assert "78" in props["RestartPreventExitStatus"]
    assert props["WorkingDirectory"] == f"/var/lib/sweep-fleet/runs/{instance}"
    assert props["TimeoutStopUSec"] == "1min 30s", "the term timeout (60 s) plus 30 s"
    # The launcher is the main process; it supervises the agent, which does not forward signals.
    assert "sweep-fleet-agent run" in props["ExecStart"] and "--term-timeout 60" in props["ExecStart"]
    assert "--forward-signals" not in props["ExecStart"]
    assert "ExecCondition" not in props and "ExecStop" not in props, "no helper runs as root"
    for name in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "RemoveIPC", "ProtectKernelTunables"):
        assert props[name] == "yes", name
    assert props["ProtectSystem"] == "strict"
    assert props.get("CapabilityBoundingSet", "") == "" and props.get("AmbientCapabilities", "") == ""
    fragment = host.file(props["FragmentPath"]).content_string
    assert "LoadCredential=netrc:/etc/sweep-fleet/netrc" in fragment
    assert KEY not in host.check_output(f"systemctl show {unit}")


@pytest.mark.parametrize("unit", UNITS)
def test_exposure_is_at_most_2(host, unit):
    out = host.run(f"systemd-analyze security --no-pager --threshold=20 {unit}")
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout).group(1))
    assert out.rc == 0 and level <= 2.0, out.stdout[-2000:]


def test_the_launcher_and_its_agent_are_sandboxed(host):
    main = host.check_output("systemctl show -p MainPID --value wandb-agent@1")
    status = host.check_output(f"cat /proc/{main}/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert fields["Seccomp"].strip() == "2"
    assert host.check_output(f"stat -c %U /proc/{main}") == "wandb-1"
    assert "sweep-fleet-agent" in host.check_output(f"tr '\\0' ' ' < /proc/{main}/cmdline")


def test_each_agent_and_its_runs_are_a_user_of_their_own(host):
    procs = host.check_output(
        "ps -eo user:20,cgroup:200,args --no-headers | grep -E '[w]andb agent|[m]ain.py' || true"
    )
    lines = procs.splitlines()
    assert sum("wandb agent" in line for line in lines) == 2
    for line in lines:
        user, cgroup = line.split()[:2]
        assert f"/wandb-agent@{user.removeprefix('wandb-')}.service" in cgroup, line
    assert KEY not in host.check_output("ps -eo args --no-headers")


def test_each_agent_works_in_its_own_directory_that_shows_the_code(host):
    for instance in ("1", "2"):
        work = f"/var/lib/sweep-fleet/runs/{instance}"
        link = host.file(f"{work}/main.py")
        assert link.linked_to == "/opt/sweep-fleet/code/main.py" and link.user == "root"
        directory = host.file(work)
        # root's, sticky, writable by the agent's own group only: runs add their files but
        # cannot replace the links to the code
        assert (directory.user, directory.group, directory.mode) == ("root", f"wandb-{instance}", 0o1770)


def test_offline_runs_and_environment_files(host):
    env = host.run("sudo cat /etc/sweep-fleet/agent.env").stdout
    assert "WANDB_MODE=offline" in env and 'SHARD_SECONDS="300"' in env
    for name in ("agent.env", "agent-1.env", "agent-2.env"):
        f = host.file(f"/etc/sweep-fleet/{name}")
        assert (f.user, f.mode) == ("root", 0o600)
    unit = host.file("/etc/systemd/system/wandb-agent@.service")
    assert unit.mode == 0o644
    assert KEY not in unit.content_string
