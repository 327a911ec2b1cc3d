"""wandb_agent: hardened template units, running as the service user, key out of sight."""

import os

import pytest

KEY = os.environ.get("STANDIN_API_KEY", "")
UNITS = ["wandb-agent@1.service", "wandb-agent@2.service"]


def show(host, unit: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show {unit}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.parametrize("unit", UNITS)
def test_agents_run_and_start_at_boot(host, unit):
    service = host.service(unit)
    if not service.is_running:
        print(host.run(f"journalctl -u {unit} --no-pager | tail -40").stdout)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("unit", UNITS)
def test_unit_properties(host, unit):
    props = show(host, unit)
    assert props["User"] == "wandb"
    assert props["KillMode"] == "mixed"
    assert props["KillSignal"] == "15"
    assert props["Restart"] == "on-failure"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == "yes"
    assert props["WorkingDirectory"] == "/var/lib/sweep-fleet/code"
    fragment = host.file(props["FragmentPath"]).content_string
    assert "LoadCredential=netrc:/etc/sweep-fleet/netrc" in fragment
    assert props["TimeoutStopUSec"] == "1min 30s", "the term timeout (60 s) plus 30 s"
    # Stop = preempt: the helper SIGINTs the agent and SIGTERMs the run; a drain's SIGINT
    # means "no new run" only because the agent does not forward signals itself.
    assert "--forward-signals" not in props["ExecStart"]
    assert "wandb-agent-stop --term-timeout 60" in props["ExecStop"]
    assert props["RuntimeDirectory"] == unit.replace("wandb-agent@", "sweep-fleet/").removesuffix(".service")
    assert "ExecCondition=+/opt/sweep-fleet/venv/bin/python" in fragment
    assert KEY not in host.check_output(f"systemctl show {unit}")


def test_agents_and_runs_are_the_service_users(host):
    procs = host.check_output("ps -eo user:20,args --no-headers | grep -E '[w]andb agent|[m]ain.py' || true")
    lines = procs.splitlines()
    assert sum("wandb agent" in line for line in lines) == 2
    assert all(line.split()[0] == "wandb" for line in lines)
    assert KEY not in host.check_output("ps -eo args --no-headers")


def test_offline_runs_and_environment_files(host):
    env = host.run("sudo cat /etc/sweep-fleet/agent.env").stdout
    assert "WANDB_MODE=offline" in env and "SHARD_SECONDS=300" in env
    for name in ("agent.env", "agent-1.env", "agent-2.env"):
        f = host.file(f"/etc/sweep-fleet/{name}")
        assert (f.user, f.mode) == ("root", 0o600)
    unit = host.file("/etc/systemd/system/wandb-agent@.service")
    assert unit.mode == 0o644
    assert KEY not in unit.content_string
