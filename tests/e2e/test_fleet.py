"""The test fleet itself: hosts boot systemd, answer SSH, and are cleaned up alone."""

from __future__ import annotations

import time

import pytest

from fleet import Fleet
from fleet.fleet import LABEL, podman

pytestmark = pytest.mark.fleet


def test_hosts_boot_systemd_and_answer_ssh(make_fleet, host_image):
    fleet = make_fleet(2)
    hosts = fleet.hosts()
    assert len(hosts) == 2
    facts = {}
    for host in hosts:
        out = fleet.ssh(
            host,
            "ps -p 1 -o comm=; systemctl is-system-running; cat /etc/machine-id; "
            "sudo -n cat /etc/ssh/ssh_host_ed25519_key.pub",
        ).stdout.split("\n")
        assert out[0] == "systemd"
        assert out[1] in ("running", "degraded")
        facts[host.name] = (out[2], out[3])
    machine_ids = {v[0] for v in facts.values()}
    host_keys = {v[1] for v in facts.values()}
    assert len(machine_ids) == 2 and all(len(m) == 32 for m in machine_ids), "each host its own machine-id"
    assert len(host_keys) == 2, "each host its own SSH host key"


def test_add_host_and_teardown_leave_other_containers_alone(make_fleet, host_image, tmp_path):
    fleet = make_fleet(1)
    bystander = f"bystander-{int(time.time())}"
    podman("run", "--detach", "--name", bystander, "--label", f"{LABEL}=someone-else", host_image)
    try:
        started = time.monotonic()
        new = fleet.add(1)
        assert len(new) == 1 and time.monotonic() - started < 60
        assert [h.name for h in fleet.hosts()] == [f"sf-{fleet.name}-1", f"sf-{fleet.name}-2"]
        fleet.ssh(new[0], "true")
        fleet.down()
        assert fleet.hosts() == []
        assert podman("container", "exists", bystander, check=False).returncode == 0
        assert podman("network", "exists", fleet.network, check=False).returncode != 0
    finally:
        podman("rm", "--force", "--time", "1", bystander, check=False)


def test_up_is_idempotent(make_fleet):
    fleet: Fleet = make_fleet(1)
    before = fleet.hosts()
    assert fleet.up(1) == before
