# Copyright: sweep-fleet developers
# Apache License 2.0
"""The facts the playbooks read of a Linux (or other POSIX) host, as ``setup`` names them.

The preflight asks every host on every run; the roles and checks read only ``system``,
``architecture``, ``os_family`` (Windows or not), ``distribution`` and ``distribution_version``
(to name an unsupported system), ``service_mgr`` and ``dns``. Ansible's fact package imports
every collector it has when any one is imported (its ``__init__``): twice the module's payload
and 60 ms of each host's time for what these few files and calls tell. The values follow
Ansible's collectors for these keys (tests/unit/test_host_state_facts.py compares them).
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil

# /etc/os-release's ID (or a word of ID_LIKE) -> Ansible's os_family for it.
OS_FAMILIES = {
    "debian": "Debian",
    "ubuntu": "Debian",
    "rhel": "RedHat",
    "fedora": "RedHat",
    "centos": "RedHat",
    "rocky": "RedHat",
    "almalinux": "RedHat",
    "ol": "RedHat",
    "amzn": "RedHat",
    "suse": "Suse",
    "opensuse": "Suse",
    "sles": "Suse",
    "arch": "Archlinux",
    "alpine": "Alpine",
    "gentoo": "Gentoo",
}
# /etc/os-release's ID -> Ansible's distribution name, where it is not the ID capitalized.
DISTRIBUTIONS = {
    "rhel": "RedHat",
    "ol": "OracleLinux",
    "amzn": "Amazon",
    "opensuse-leap": "openSUSE Leap",
    "opensuse-tumbleweed": "openSUSE Tumbleweed",
    "sles": "SLES",
    "almalinux": "AlmaLinux",
    "centos": "CentOS",
    "arch": "Archlinux",
}
# systemd's own test of whether it booted the host (sd_booted), as Ansible's collector does.
SYSTEMD_CANARIES = ("/run/systemd/system/", "/dev/.run/systemd/", "/dev/.systemd/")
# PID 1's name -> the service manager's, where they differ (Ansible's names).
PROC_1_NAMES = {"procd": "openwrt_init", "runit-init": "runit", "svscan": "svc", "openrc-init": "openrc"}
READ_LIMIT = 64 * 1024


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(READ_LIMIT)
    except OSError:
        return ""


def os_release() -> dict[str, str]:
    """The fields of /etc/os-release (or /usr/lib/os-release)."""
    fields: dict[str, str] = {}
    text = _read("/etc/os-release") or _read("/usr/lib/os-release")
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep or name.strip().startswith("#"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        fields[name.strip()] = words[0] if words else ""
    return fields


def service_mgr(system: str) -> str:
    """The host's service manager, by the steps of Ansible's collector for Linux hosts."""
    proc_1 = os.path.basename(_read("/proc/1/comm").strip())
    if proc_1 and proc_1 != "init" and not proc_1.endswith("sh"):  # "sh": a container's shell
        return PROC_1_NAMES.get(proc_1, proc_1)
    if system != "Linux":
        return "service"
    systemctl = shutil.which("systemctl")
    if systemctl and any(os.path.exists(path) for path in SYSTEMD_CANARIES):
        return "systemd"
    if shutil.which("initctl") and os.path.exists("/etc/init/"):
        return "upstart"
    if os.path.exists("/sbin/openrc"):
        return "openrc"
    if (
        systemctl
        and os.path.islink("/sbin/init")
        and os.path.basename(os.readlink("/sbin/init")) == "systemd"
    ):
        return "systemd"
    for path, name in (("/etc/init.d/", "sysvinit"), ("/etc/dinit.d/", "dinit")):
        if os.path.exists(path):
            return name
    return "service"


def dns() -> dict:
    """/etc/resolv.conf as Ansible's dns collector reads it."""
    found: dict = {}
    for line in _read("/etc/resolv.conf").splitlines():
        tokens = line.split()
        if not tokens or tokens[0].startswith(("#", ";")):
            continue
        key, rest = tokens[0], tokens[1:]
        if key == "nameserver":
            found.setdefault("nameservers", []).extend(rest)
        elif key == "domain" and rest:
            found["domain"] = rest[0]
        elif key in ("search", "sortlist"):
            found[key] = rest
        elif key == "options":
            found["options"] = {
                name: (value if sep else True) for name, sep, value in (o.partition(":") for o in rest)
            }
    return found


def facts() -> dict:
    """The facts, with Ansible's ``ansible_`` prefix as ``setup`` returns them."""
    system = platform.system()
    machine = platform.machine()
    out = {"system": system, "machine": machine, "architecture": machine, "kernel": platform.release()}
    if system == "Linux":
        release = os_release()
        ident = release.get("ID", "").lower()
        words = [ident, *release.get("ID_LIKE", "").lower().split()]
        out["distribution"] = DISTRIBUTIONS.get(ident, ident.capitalize() if ident else "Linux")
        out["distribution_version"] = release.get("VERSION_ID", "")
        out["os_family"] = next((OS_FAMILIES[w] for w in words if w in OS_FAMILIES), out["distribution"])
    else:
        out["distribution"] = {"Darwin": "MacOSX"}.get(system, system)
        out["distribution_version"] = platform.mac_ver()[0] if system == "Darwin" else platform.release()
        out["os_family"] = system
    out["service_mgr"] = service_mgr(system)
    out["dns"] = dns()
    return {f"ansible_{key}": value for key, value in out.items()}
