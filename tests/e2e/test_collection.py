"""The collection as a user with an Ansible project of their own gets it.

Built with ansible-galaxy from the repository, installed from the tarball into a
temporary path, and used from a playbook of the user's that names the roles by FQCN only,
run outside the repository (no ansible.cfg of ours, no roles path), against a fresh host.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from support import REPO, TEST_API_KEY, VENV_BIN

pytestmark = pytest.mark.fleet

COLLECTION = REPO / "collections" / "ansible_collections" / "sweep_fleet" / "wandb"
SHARDS = REPO / "examples" / "shards"


def users_env(**ansible: str) -> dict[str, str]:
    """A user's environment: no setting of ours (make exports ANSIBLE_CONFIG), only theirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
    return env | {"ANSIBLE_NOCOLOR": "1", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"} | ansible


def galaxy(*args: str, cwd) -> str:
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-galaxy"), *args],
        cwd=cwd,
        env=users_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_users_playbook_deploys_with_the_installed_collection(make_fleet, standin_for, tmp_path):
    built = tmp_path / "built"
    galaxy("collection", "build", str(COLLECTION), "--output-path", str(built), cwd=tmp_path)
    (tarball,) = built.glob("sweep_fleet-wandb-*.tar.gz")
    installed = tmp_path / "collections"
    galaxy("collection", "install", str(tarball), "-p", str(installed), cwd=tmp_path)
    assert (installed / "ansible_collections" / "sweep_fleet" / "wandb" / "roles" / "wandb_agent").is_dir()

    fleet = make_fleet(1)
    standin = standin_for(fleet)
    project = tmp_path / "my-project"
    project.mkdir()
    fleet.write_inventory(project / "hosts.ini", group="gpu_boxes")
    (project / "site.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Deploy the W&B sweep agents",
                    "hosts": "gpu_boxes",
                    "roles": [
                        "sweep_fleet.wandb.wandb_runtime",
                        "sweep_fleet.wandb.wandb_credentials",
                        "sweep_fleet.wandb.wandb_code",
                        "sweep_fleet.wandb.wandb_sweep",
                        "sweep_fleet.wandb.wandb_agent",
                    ],
                    "vars": {
                        "wandb_credentials_api_key": TEST_API_KEY,
                        "wandb_credentials_base_url": standin.url,
                        "wandb_runtime_uv_source": "controller",
                        "wandb_runtime_uv_controller_path": str(VENV_BIN / "uv"),
                        "wandb_code_local_path": str(SHARDS),
                        "wandb_sweep_project": "collection",
                        "wandb_sweep_program": "main.py",
                        "wandb_sweep_parameters": {
                            "data_path": {"values": ["datasets/part1.csv", "datasets/part2.csv"]}
                        },
                        "wandb_agent_environment": {"SHARD_SECONDS": "1"},
                    },
                }
            ],
            sort_keys=False,
        )
    )
    env = users_env(
        ANSIBLE_COLLECTIONS_PATH=str(installed),
        ANSIBLE_ROLES_PATH=str(project / "roles"),  # none: the roles come from the collection
    )
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "hosts.ini", "site.yml"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    assert str(REPO) not in proc.stdout, "nothing came from the repository"
    (sweep,) = standin.sweeps.values()
    standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=180, what="the sweep to finish")
    assert {(r["state"], r["exitcode"]) for r in standin.records(sweep.id)} == {("finished", 0)}
