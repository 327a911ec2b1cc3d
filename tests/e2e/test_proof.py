"""The proof of the test ground: a real sweep over 12 data shards on 3 fresh SSH hosts.

wandb is installed on the hosts by a few plain tasks (tests/playbooks/proof.yml), the
sweep is created with the real ``wandb sweep`` on the controller, and one real
``wandb agent`` runs per host, all against the W&B API stand-in.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess

import pytest
import yaml

from support import REPO, TEST_API_KEY, VENV_BIN, VERSIONS, run_playbook, task_results

pytestmark = pytest.mark.fleet

SHARDS = REPO / "examples" / "shards"


def create_sweep(standin, sweep_yaml, project: str, workdir) -> str:
    env = dict(
        os.environ,
        WANDB_BASE_URL=standin.url,
        WANDB_API_KEY=TEST_API_KEY,
        WANDB_ERROR_REPORTING="false",
        WANDB_DIR=str(workdir),
    )
    proc = subprocess.run(
        [str(VENV_BIN / "wandb"), "sweep", "--project", project, str(sweep_yaml)],
        cwd=workdir,
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"wandb agent (\S+)", proc.stderr + proc.stdout)
    assert match, f"no sweep id in the output of wandb sweep:\n{proc.stderr}"
    return match.group(1)


def test_twelve_shards_on_three_hosts(make_fleet, standin_for, tmp_path):
    fleet = make_fleet(3)
    inventory = fleet.write_inventory(tmp_path / "hosts.ini")
    standin = standin_for(fleet)
    sweep_id = create_sweep(standin, SHARDS / "sweep.yaml", "beauty-score", tmp_path)

    secrets = tmp_path / "vars.yml"
    secrets.write_text(
        yaml.safe_dump(
            {
                "proof_sweep_id": sweep_id,
                "proof_base_url": standin.url,
                "proof_api_key": TEST_API_KEY,
                "proof_uv_binary": str(VENV_BIN / "uv"),
                "proof_code_dir": str(SHARDS),
                "proof_wandb_version": VERSIONS["wandb_runtime_wandb_version"],
            }
        )
    )
    secrets.chmod(0o600)
    result = run_playbook(
        REPO / "tests/playbooks/proof.yml", inventory, "-e", f"@{secrets}", json_output=True
    )

    # Every agent exited 0 at the end.
    agents = task_results(result.json, "Run the agent until the sweep has no more work")
    assert sorted(agents) == sorted(h.name for h in fleet.hosts())
    assert {host: r["rc"] for host, r in agents.items()} == dict.fromkeys(agents, 0)

    records = standin.records(sweep_id)
    expected = yaml.safe_load((SHARDS / "sweep.yaml").read_text())["parameters"]["data_path"]["values"]
    ran = collections.Counter(r["params"]["data_path"] for r in records)
    print(
        json.dumps(
            [{k: r[k] for k in ("agent_host", "run_id", "params", "state")} for r in records], indent=1
        )
    )
    # Each of the 12 values ran exactly once, and finished with exit code 0...
    assert ran == collections.Counter(expected)
    assert {(r["state"], r["exitcode"]) for r in records} == {("finished", 0)}
    # ...on every one of the three hosts.
    assert {r["agent_host"] for r in records} == {h.name for h in fleet.hosts()}
    # The sweep ended and every agent was told to exit.
    assert standin.sweep(sweep_id).state == "FINISHED"
    assert all(a.exited for a in standin.agents.values())
