"""The fleet tool's own logic, without starting any host."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import fleet.fleet as fleet_mod
from fleet import Fleet, FleetError, Host
from support import VENV_BIN, ansible_env


def test_missing_tools_name_the_debian_packages(monkeypatch):
    monkeypatch.setattr(fleet_mod.shutil, "which", lambda tool: None)
    monkeypatch.setattr(fleet_mod, "_in_sbin", lambda tool: False)
    with pytest.raises(FleetError) as err:
        fleet_mod.require_tools()
    message = str(err.value)
    for package in ("podman", "runc", "mmdebstrap", "openssh-client"):
        assert package in message
    assert "apt-get install" in message


def test_present_tools_pass(monkeypatch):
    monkeypatch.setattr(fleet_mod.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    fleet_mod.require_tools()


def test_image_tag_follows_the_recipe(tmp_path, monkeypatch):
    recipe = tmp_path / "image"
    shutil.copytree(fleet_mod.IMAGE_DIR, recipe)
    monkeypatch.setattr(fleet_mod, "IMAGE_DIR", recipe)
    first = fleet_mod.image_tag()
    assert first == fleet_mod.image_tag()
    with (recipe / "packages.txt").open("a") as handle:
        handle.write("less\n")
    assert fleet_mod.image_tag() != first
    assert first.startswith(fleet_mod.IMAGE_NAME + ":")


@pytest.mark.parametrize("name", ["", "a b", "x/y", "demo;rm"])
def test_fleet_names_are_checked(name, tmp_path):
    with pytest.raises(FleetError, match="fleet name"):
        Fleet(name, tmp_path)


def test_inventory_is_what_a_user_writes(tmp_path):
    fleet = Fleet("inv", tmp_path / "state")
    hosts = [Host("sf-inv-1", "10.89.7.2"), Host("sf-inv-2", "10.89.7.3")]
    path = fleet.write_inventory(tmp_path / "hosts.ini", hosts, host_vars={"wandb_agent_count": 2})
    text = path.read_text()
    assert "ansible_host=10.89.7.2" in text and "ansible_user=ops" in text
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-inventory"), "-i", str(path), "--list"],
        env=ansible_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    assert sorted(data["fleet"]["hosts"]) == ["sf-inv-1", "sf-inv-2"]
    hostvars = data["_meta"]["hostvars"]["sf-inv-2"]
    assert hostvars["ansible_host"] == "10.89.7.3"
    assert hostvars["ansible_ssh_private_key_file"] == str(fleet.key_file)
    assert hostvars["wandb_agent_count"] == 2
    assert str(fleet.known_hosts) in hostvars["ansible_ssh_common_args"]
