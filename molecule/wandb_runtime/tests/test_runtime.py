"""wandb_runtime: the service user, uv from the package index, the venv with pinned wandb."""


def test_service_user(host):
    user = host.user("wandb")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/sweep-fleet"
    assert user.uid < 1000
    home = host.file("/var/lib/sweep-fleet")
    assert (home.user, home.group, home.mode) == ("wandb", "wandb", 0o750)


def test_uv_is_pinned(host):
    uv = host.file("/usr/local/bin/uv")
    assert (uv.user, uv.mode) == ("root", 0o755)
    assert host.check_output("/usr/local/bin/uv --version").split()[:2] == ["uv", "0.13.8"]
    assert not host.file("/tmp").listdir() or not any(n.endswith(".whl") for n in host.file("/tmp").listdir())


def test_venv_has_pinned_wandb_and_is_root_owned(host):
    venv = host.file("/opt/sweep-fleet/venv")
    assert (venv.user, venv.group) == ("root", "root")
    version = host.check_output(
        "/opt/sweep-fleet/venv/bin/python -c 'import wandb; print(wandb.__version__)'"
    )
    assert version == "0.31.0"
    # The service user can use the venv but not change it.
    assert host.run("sudo -u wandb /opt/sweep-fleet/venv/bin/python -c 'import wandb'").rc == 0
    assert host.run("sudo -u wandb touch /opt/sweep-fleet/venv/lib/x").rc != 0
    assert host.file("/opt/sweep-fleet/venv/pyvenv.cfg").contains("home = /usr/bin")


def test_constraints_pin_wandb(host):
    constraints = host.file("/opt/sweep-fleet/constraints.txt")
    assert constraints.contains("^wandb==0.31.0$")
    assert constraints.mode == 0o644
