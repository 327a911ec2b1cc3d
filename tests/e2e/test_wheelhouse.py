"""Hosts that cannot reach any package index get everything from the controller's wheelhouse.

The fleet's network is internal (podman --internal): its hosts reach the controller (SSH,
the W&B stand-in) and nothing else, so neither PyPI nor a Debian mirror. The deploy
installs uv from the pinned wheel, wandb and the code's requirements all from the one
file the controller pushed; the sweep then runs to the end.
"""

from __future__ import annotations

import collections

import pytest
import yaml

from support import REPO, TEST_API_KEY, changed_tasks, run_playbook

pytestmark = pytest.mark.fleet

SHARDS = REPO / "examples" / "shards"
SHARD_VALUES = yaml.safe_load((SHARDS / "sweep.yaml").read_text())["parameters"]["data_path"]["values"]


def test_offline_hosts_install_everything_from_the_wheelhouse(make_fleet, standin_for, tmp_path):
    fleet = make_fleet(2, offline=True)
    standin = standin_for(fleet)
    hosts = fleet.hosts()
    # Offline for real: no index, no mirror.
    for host in hosts:
        probe = fleet.ssh(host, "curl -sS -m 5 -o /dev/null https://pypi.org/simple/", check=False)
        assert probe.returncode != 0, "the test hosts can reach PyPI: the network is not internal"
    inventory = tmp_path / "hosts.ini"
    fleet.write_inventory(inventory)
    settings = {
        "wandb_credentials_api_key": TEST_API_KEY,
        "wandb_credentials_base_url": standin.url,
        "wandb_runtime_wheelhouse": True,
        "wandb_runtime_uv_source": "pypi",  # the pinned uv wheel, through the wheelhouse
        "wandb_runtime_wheelhouse_cache": str(tmp_path / "wheelhouse"),
        "wandb_code_local_path": str(SHARDS),
        "wandb_code_extra_paths": [{"src": str(SHARDS / "datasets") + "/", "dest": "data/shards"}],
        "wandb_sweep_project": "offline",
        "wandb_sweep_program": "main.py",
        "wandb_sweep_parameters": {"data_path": {"values": SHARD_VALUES}},
        "wandb_agent_environment": {"SHARD_SECONDS": "1"},
        "wandb_agent_stagger_seconds": 0.5,
    }
    extra_vars = tmp_path / "vars.yml"
    extra_vars.write_text(yaml.safe_dump(settings))

    def deploy(*args: str, check: bool = True):
        return run_playbook(REPO / "deploy.yml", inventory, "-e", f"@{extra_vars}", *args, check=check)

    # Without the wheelhouse these hosts cannot install anything: the failure names the index.
    alone = deploy("--limit", hosts[0].name, "-e", "wandb_runtime_wheelhouse=false", check=False)
    assert alone.returncode != 0
    assert "cannot read uv's files from https://pypi.org/simple/uv/" in alone.stdout, alone.stdout[-3000:]

    checked = deploy("--check")
    assert "failed=0" in checked.stdout
    deployed = deploy()
    assert "sweep_fleet.wandb.wheelhouse" not in deployed.stderr
    (sweep,) = standin.sweeps.values()
    standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=240, what="the offline sweep to finish")
    records = standin.records(sweep.id)
    assert collections.Counter(r["params"]["data_path"] for r in records) == collections.Counter(SHARD_VALUES)
    assert {(r["state"], r["exitcode"]) for r in records} == {("finished", 0)}
    for host in hosts:
        # uv, wandb and the code's own requirement, all installed; the wheelhouse root-only.
        out = fleet.ssh(
            host,
            "/usr/local/bin/uv --version; "
            "/opt/sweep-fleet/venv/bin/python -c 'import iniconfig, wandb; print(wandb.__version__)'; "
            "sudo stat -c '%U %a' /opt/sweep-fleet/wheelhouse.tar",
        ).stdout.split("\n")
        assert out[0].startswith("uv 0.13.8") and out[1] == "0.31.0" and out[2] == "root 600", out
    # Once more: nothing to do, on the hosts or the controller's side.
    again = deploy()
    assert changed_tasks(again.stdout) == []
