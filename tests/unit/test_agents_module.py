"""The agents module: what the files written in the same call ask of the units step, and the
record written after it."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import agents as agents_steps
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import host_record
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agents import unit_args
from ansible_collections.sweep_fleet.wandb.plugins.modules import agents

from support import REPO

UNIT = "/etc/systemd/system/wandb-agent@.service"
SWEEP = "/etc/sweep-fleet/sweep.env"


@pytest.fixture(scope="module")
def rules() -> dict:
    """The role's own rules (roles/wandb_agent/vars/main.yml), with its default paths."""
    text = (REPO / "roles" / "wandb_agent" / "vars" / "main.yml").read_text()
    rules = yaml.safe_load(text)["__wandb_agent_restart_on"]
    return {
        "all": ["/opt/sweep-fleet/bin/sweep-fleet-agent", "/etc/sweep-fleet/agent.env", UNIT],
        "own": rules["own"],
        "reload": ["^/etc/systemd/system/wandb-agent@[.]service$", rules["reload"][1]],
        "follow": [SWEEP],
    }


def units(**args) -> dict:
    return {"instances": ["1", "2", "3"], "start": True, **args}


def test_one_agents_own_file_restarts_that_agent_alone(rules):
    args = unit_args(units(), rules, ["/etc/sweep-fleet/agent-2.env"])
    assert (args["restart"], args["follow"], args.get("reload", False)) == (["2"], [], False)
    args = unit_args(units(), rules, ["/etc/systemd/system/wandb-agent@3.service.d/devices.conf"])
    assert (args["restart"], args["reload"]) == (["3"], True)
    # A file of an instance that is no longer wanted restarts nothing.
    assert unit_args(units(), rules, ["/etc/sweep-fleet/agent-9.env"])["restart"] == []


def test_a_file_every_agent_reads_restarts_them_all_and_the_unit_reloads_systemd(rules):
    args = unit_args(units(), rules, ["/etc/sweep-fleet/agent.env"])
    assert args["restart"] == ["1", "2", "3"] and not args.get("reload")
    args = unit_args(units(), rules, [UNIT, "/etc/sweep-fleet/agent-1.env"])
    assert args["restart"] == ["1", "2", "3"] and args["reload"]


def test_a_new_sweep_alone_moves_the_agents_after_their_run(rules):
    args = unit_args(units(), rules, [SWEEP])
    assert (args["restart"], args["follow"]) == ([], ["1", "2", "3"])


def test_what_the_role_asks_is_kept_and_nothing_is_restarted_when_nothing_runs(rules):
    # The key or the venv changed: the role asks for every agent.
    assert unit_args(units(restart=["1", "2", "3"]), rules, [])["restart"] == ["1", "2", "3"]
    assert unit_args(units(restart=["1"]), rules, ["/etc/sweep-fleet/agent-1.env"])["restart"] == ["1"]
    # An ended sweep or disabled agents: nothing starts, so nothing restarts or moves.
    args = unit_args(units(start=False), rules, ["/etc/sweep-fleet/agent.env", SWEEP, UNIT])
    assert (args.get("restart", []), args.get("follow", []), args["reload"]) == ([], [], True)


def test_an_own_file_rule_without_an_instance_group_is_refused():
    out = io.StringIO()
    args = {
        "units": {"instances": ["1"]},
        "restart_on": {"own": [".*/agent-[0-9]+[.]env"]},
        "_ansible_check_mode": True,
    }
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        agents.main()
    result = json.loads(out.getvalue())
    assert result["failed"] and "has no group named instance" in result["msg"]


def run_agents(monkeypatch, check: bool = False, **args) -> dict:
    """The module's call with its units step stood in for (no systemd here): the files are
    written and the record too, as on a host."""
    monkeypatch.setattr(agents_steps, "run_step", lambda *_args: {"changed": False})
    out = io.StringIO()
    with (
        patch_module_args({"units": {"instances": ["1"]}, **args, "_ansible_check_mode": check}),
        contextlib.redirect_stdout(out),
        pytest.raises(SystemExit),
    ):
        agents.main()
    return json.loads(out.getvalue())


def test_the_record_written_after_the_units_lists_the_calls_own_paths_too(tmp_path, monkeypatch):
    """deploy.yml's record, written by the agents' call: its spec gains the directories and
    files of that call (the playbook cannot list them before the call), so a change to one
    of them by hand is drift; in check mode, no record."""
    os.chmod(tmp_path, 0o755)
    record = str(tmp_path / "deploy-record.json")
    given = tmp_path / "netrc"
    given.write_text("machine api.wandb.ai\n")
    dropin = str(tmp_path / "wandb-agent@1.service.d")
    args = {
        "directories": [{"path": dropin, "mode": "0755"}],
        "record": record,
        "digest": "d1",
        "spec": {"paths": [str(given)]},
    }
    result = run_agents(monkeypatch, check=True, **args)
    assert not result["recorded"] and not os.path.exists(record)
    result = run_agents(monkeypatch, **args)
    assert result["recorded"] and not result.get("failed"), result
    assert json.loads(Path(record).read_text())["spec"]["paths"] == [str(given), dropin]
    assert host_record.verify(record)["drift"] == []
    os.chmod(dropin, 0o700)
    assert host_record.verify(record)["drift"] == [f"path {dropin}"]
    # Without a digest (a host deployed in full every time), none.
    os.unlink(record)
    assert not run_agents(monkeypatch, **{**args, "digest": ""})["recorded"] and not os.path.exists(record)
