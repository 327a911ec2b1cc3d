"""wandb_runtime: the service user, uv from the package index, a root-owned venv with pinned wandb."""

from pathlib import Path

import yaml

# The pinned versions, from their one source.
PINS = yaml.safe_load((Path(__file__).parents[3] / "roles/wandb_runtime/defaults/main.yml").read_text())
UV, WANDB = PINS["wandb_runtime_uv_version"], PINS["wandb_runtime_wandb_version"]
PLANTED = f"/tmp/uv-{UV}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def test_service_user(host):
    user = host.user("wandb")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/sweep-fleet"
    assert user.uid < 1000
    home = host.file("/var/lib/sweep-fleet")
    assert (home.user, home.group, home.mode) == ("wandb", "wandb", 0o750)
    runtime = host.file("/opt/sweep-fleet")
    assert (runtime.user, runtime.group, runtime.mode) == ("root", "root", 0o755)


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
    # The service user can use the venv but not change it.
    assert host.run("sudo -u wandb /opt/sweep-fleet/venv/bin/python -c 'import wandb'").rc == 0
    assert host.run("sudo -u wandb touch /opt/sweep-fleet/venv/lib/x").rc != 0
    assert host.file("/opt/sweep-fleet/venv/pyvenv.cfg").contains("home = /usr/bin")
