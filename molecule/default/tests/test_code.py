"""wandb_code (git mode): a root-owned checkout at the pinned ref, its requirements installed."""

from pathlib import Path

import yaml

CODE = "/opt/sweep-fleet/code"
PINS = yaml.safe_load((Path(__file__).parents[3] / "roles/wandb_runtime/defaults/main.yml").read_text())


def test_checkout_is_at_the_pinned_ref(host):
    assert host.check_output(f"sudo git -C {CODE} rev-parse HEAD") == host.check_output(
        "sudo git -C /srv/shards.git rev-parse main"
    )


def test_code_belongs_to_root_and_the_agents_can_only_read_it(host):
    code = host.file(CODE)
    assert (code.user, code.group, code.mode) == ("root", "wandb", 0o2750)
    main = host.file(f"{CODE}/main.py")
    assert (main.user, main.group, main.mode) == ("root", "wandb", 0o640)
    assert host.run(f"sudo -u wandb-1 cat {CODE}/main.py").rc == 0
    assert host.run(f"sudo -u wandb-1 touch {CODE}/requirements.txt {CODE}/new").rc != 0


def test_requirements_are_installed_in_the_venv(host):
    assert host.run("/opt/sweep-fleet/venv/bin/python -c 'import iniconfig'").rc == 0
    version = host.check_output(
        "/opt/sweep-fleet/venv/bin/python -c 'import wandb; print(wandb.__version__)'"
    )
    assert version == PINS["wandb_runtime_wandb_version"], (
        "the code's requirements cannot move the pinned wandb"
    )
