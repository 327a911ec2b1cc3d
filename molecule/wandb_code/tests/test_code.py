"""wandb_code (git mode): the checkout, owned by the service user, with its requirements installed."""

CODE = "/var/lib/sweep-fleet/code"


def test_checkout_is_at_the_pinned_ref(host):
    head = host.check_output(f"sudo -u wandb git -C {CODE} rev-parse HEAD")
    assert head == host.check_output("sudo -u wandb git -C /srv/shards.git rev-parse main")


def test_code_is_owned_by_the_service_user(host):
    main = host.file(f"{CODE}/main.py")
    assert (main.user, main.group) == ("wandb", "wandb")
    assert host.file(CODE).user == "wandb"


def test_requirements_are_installed_in_the_venv(host):
    assert host.run("/opt/sweep-fleet/venv/bin/python -c 'import iniconfig'").rc == 0
    version = host.check_output(
        "/opt/sweep-fleet/venv/bin/python -c 'import wandb; print(wandb.__version__)'"
    )
    assert version == "0.31.0", "the code's requirements cannot move the pinned wandb"
