"""Code from a git repository at a pinned ref, with pyproject.toml requirements, running
the users' RL sweep (explicit command, constants, categorical values, metric)."""

from __future__ import annotations

import collections
import itertools
import shutil

import pytest
import yaml

from support import REPO, TEST_API_KEY, GitServer, git, run_playbook

pytestmark = pytest.mark.fleet

RL = REPO / "examples" / "rl-mpe"


@pytest.fixture
def git_server(make_fleet, tmp_path):
    """The RL example in a repository served by `git daemon` where the hosts reach it."""
    fleet = make_fleet(2)
    work = tmp_path / "rl-mpe"
    shutil.copytree(RL, work)
    git("init", "-q", "-b", "main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    pinned = git("rev-parse", "HEAD", cwd=work)
    (work / "train" / "NOT_PINNED").write_text("a later commit the deploy must not check out\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "later", cwd=work)
    server = GitServer(tmp_path / "served", fleet.gateway())
    yield fleet, server.publish(work, "rl-mpe"), pinned
    server.stop()


def test_git_code_and_the_rl_sweep(git_server, standin_for, tmp_path):
    fleet, repo, pinned = git_server
    standin = standin_for(fleet)
    inventory = fleet.write_inventory(tmp_path / "hosts.ini")
    sweep = yaml.safe_load((RL / "sweep.yaml").read_text())
    settings = tmp_path / "vars.yml"
    settings.write_text(
        yaml.safe_dump(
            {
                "wandb_credentials_api_key": TEST_API_KEY,
                "wandb_credentials_base_url": standin.url,
                "wandb_runtime_uv_source": "controller",
                "wandb_code_source": "git",
                "wandb_code_git_repo": repo,
                "wandb_code_git_version": pinned,
                "wandb_sweep_project": sweep["project"],
                "wandb_sweep_name": sweep["name"],
                "wandb_sweep_program": sweep["program"],
                "wandb_sweep_command": sweep["command"],
                "wandb_sweep_metric": sweep["metric"],
                "wandb_sweep_parameters": sweep["parameters"],
                "wandb_agent_stagger_seconds": 0.5,
                "wandb_agent_environment": {"EPISODE_SECONDS": "0.2"},
            }
        )
    )
    run_playbook(REPO / "deploy.yml", inventory, "-e", f"@{settings}")

    (created,) = standin.sweeps.values()
    assert created.config["command"] == sweep["command"]
    assert created.config["parameters"]["env_name"] == {"distribution": "constant", "value": "MPE"}
    assert created.config["metric"] == {"goal": "maximize", "name": "average_episode_rewards"}
    host = fleet.hosts()[0]
    checkout = fleet.ssh(host, "sudo git -C /opt/sweep-fleet/code rev-parse HEAD").stdout.strip()
    assert checkout == pinned
    assert "NOT_PINNED" not in fleet.ssh(host, "sudo ls /opt/sweep-fleet/code/train").stdout
    assert (
        fleet.ssh(
            host, "/opt/sweep-fleet/venv/bin/python -c 'import tomli; print(tomli.__name__)'"
        ).stdout.strip()
        == "tomli"
    ), "the pyproject.toml requirement is installed"

    standin.wait_for(lambda s: created.state == "FINISHED", timeout=240, what="the RL sweep to finish")
    records = standin.records(created.id)
    grid = {
        (lr, epochs)
        for lr, epochs in itertools.product(
            sweep["parameters"]["lr"]["values"], sweep["parameters"]["ppo_epoch"]["values"]
        )
    }
    ran = collections.Counter((r["params"]["lr"], r["params"]["ppo_epoch"]) for r in records)
    assert set(ran) == grid and set(ran.values()) == {1}
    assert {r["params"]["env_name"] for r in records} == {"MPE"}
    # python3 on the unit's PATH is the venv's: every run finished, exit code 0, on both hosts.
    assert {(r["state"], r["exitcode"]) for r in records} == {("finished", 0)}
    assert {r["agent_host"] for r in records} == {h.name for h in fleet.hosts()}
