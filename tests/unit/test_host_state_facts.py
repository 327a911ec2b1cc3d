"""host_state's own reading of the facts the playbooks use, against Ansible's collectors for
the same keys on this machine (the test hosts' Debian with systemd is the e2e tests' part)."""

from __future__ import annotations

import ansible_collections.sweep_fleet.wandb.plugins.module_utils.host_facts as host_facts
import pytest
from ansible.module_utils.facts import ansible_collector
from ansible.module_utils.facts.namespace import PrefixFactNamespace
from ansible.module_utils.facts.system import dns as dns_collector
from ansible.module_utils.facts.system.distribution import DistributionFactCollector
from ansible.module_utils.facts.system.dns import DnsFactCollector
from ansible.module_utils.facts.system.platform import PlatformFactCollector
from ansible.module_utils.facts.system.service_mgr import ServiceMgrFactCollector

# What the roles and the checks read (plugins/module_utils/host_facts.py).
USED = ("system", "architecture", "os_family", "distribution", "service_mgr", "dns")


class Module:
    """What the collectors ask of a module: where a command is, and its output."""

    @staticmethod
    def get_bin_path(name, *args, **kwargs):
        import shutil

        return shutil.which(name)

    @staticmethod
    def run_command(args, **kwargs):
        import subprocess

        proc = subprocess.run(args, shell=isinstance(args, str), capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def ansibles() -> dict:
    collector = ansible_collector.get_ansible_collector(
        all_collector_classes=[
            PlatformFactCollector,
            DistributionFactCollector,
            ServiceMgrFactCollector,
            DnsFactCollector,
        ],
        namespace=PrefixFactNamespace(namespace_name="ansible", prefix="ansible_"),
        filter_spec=[],
        gather_subset=["!all", "!min", "platform", "distribution", "service_mgr", "dns"],
        gather_timeout=10,
        minimal_gather_subset=frozenset(),
    )
    return collector.collect(module=Module())


def test_the_facts_the_playbooks_read_equal_ansibles():
    ours, theirs = host_facts.facts(), ansibles()
    for key in USED:
        assert ours[f"ansible_{key}"] == theirs[f"ansible_{key}"], key


@pytest.mark.parametrize(
    ("release", "family", "name"),
    [
        ('ID=debian\nVERSION_ID="12"\n', "Debian", "Debian"),
        ('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n', "Debian", "Ubuntu"),
        ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n', "RedHat", "Rocky"),
        ('ID="rhel"\nVERSION_ID="9.4"\n', "RedHat", "RedHat"),
        ('ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', "Suse", "openSUSE Leap"),
        ("ID=arch\n", "Archlinux", "Archlinux"),
        ("ID=nixos\n", "Nixos", "Nixos"),
        ("", "Linux", "Linux"),
    ],
)
def test_os_release_names_the_family(monkeypatch, release, family, name):
    monkeypatch.setattr(host_facts, "_read", lambda path: release if path.endswith("os-release") else "")
    monkeypatch.setattr(host_facts.platform, "system", lambda: "Linux")
    found = host_facts.facts()
    assert (found["ansible_os_family"], found["ansible_distribution"]) == (family, name)


def test_resolv_conf_reads_as_ansibles_dns_collector(monkeypatch):
    text = (
        "# a comment\n; another\nnameserver 10.0.0.2\nnameserver 10.0.0.3 \ndomain lab.example\n"
        "search a.example b.example\nsortlist 10.0.0.0/8\noptions ndots:2 rotate\n"
    )
    monkeypatch.setattr(host_facts, "_read", lambda path: text if path == "/etc/resolv.conf" else "")
    monkeypatch.setattr(dns_collector, "get_file_content", lambda path, default=None: text)
    assert host_facts.dns() == DnsFactCollector().collect()["dns"]
