"""wandb_runtime: the agents' group, uv from the package index, a root-owned venv with pinned wandb."""

from pathlib import Path

import yaml

# The pinned versions, from their one source.
PINS = yaml.safe_load((Path(__file__).parents[3] / "roles/wandb_runtime/defaults/main.yml").read_text())
UV, WANDB = PINS["wandb_runtime_uv_version"], PINS["wandb_runtime_wandb_version"]
PLANTED = f"/tmp/uv-{UV}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def test_the_agents_group_and_root_owned_directories(host):
    assert host.group("wandb").exists and host.group("wandb").gid < 1000
    assert not host.user("wandb").exists, "no shared account: each agent has its own (the agent role)"
    for path in ("/opt/sweep-fleet", "/var/lib/sweep-fleet"):
        directory = host.file(path)
        assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o755), path


def test_uv_is_pinned(host):
    uv = host.file("/usr/local/bin/uv")
    assert (uv.user, uv.mode) == ("root", 0o755)
    assert host.check_output("/usr/local/bin/uv --version").split()[:2] == ["uv", UV]
    assert not [n for n in host.file("/usr/local/bin").listdir() if n.startswith(".uv-")], "no temporary left"


def test_a_file_another_user_planted_is_neither_read_nor_replaced(host):
    """The uv download once went to this predictable name in /tmp (a local root exploit)."""
    planted = host.file(PLANTED)
    assert (planted.user, planted.mode) == ("nobody", 0o666)
    assert planted.content_string == "not a wheel\n"
    assert [n for n in host.file("/tmp").listdir() if n.endswith(".whl")] == [PLANTED.rsplit("/", 1)[1]]


def test_venv_has_pinned_wandb_and_is_root_owned(host):
    venv = host.file("/opt/sweep-fleet/venv")
    assert (venv.user, venv.group) == ("root", "root")
    version = host.check_output(
        "/opt/sweep-fleet/venv/bin/python -c 'import wandb; print(wandb.__version__)'"
    )
    assert version == WANDB
    # An agent's user can use the venv but not change it.
    assert host.run("sudo -u wandb-1 /opt/sweep-fleet/venv/bin/python -c 'import wandb'").rc == 0
    assert host.run("sudo -u wandb-1 touch /opt/sweep-fleet/venv/lib/x").rc != 0
    assert host.file("/opt/sweep-fleet/venv/pyvenv.cfg").contains("home = /usr/bin")
