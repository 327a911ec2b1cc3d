"""The sweep_fleet.wandb.sweep module, run by Ansible against the W&B API stand-in."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sweep_fleet.wandb.plugins.modules import sweep as sweep_module

from standin import StandIn
from standin.server import PAGE_LIMIT, Assignment
from support import REPO, TEST_API_KEY, VENV_BIN, Recorder, ansible_env

GRID = {
    "program": "main.py",
    "method": "grid",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {"lr": {"values": [0.1, 0.01]}, "layers": {"min": 1, "max": 3}},
}


@pytest.fixture(params=["current", "old"])
def server(request):
    """A W&B server as it is now, and an older self-hosted one without the newer fields."""
    with StandIn(api_key=TEST_API_KEY, version=request.param) as s:
        yield s
        # The module's first query asks for what an older server lacks; it falls back.
        refused = s.take_errors()
        if request.param == "current":
            assert refused == []
        else:
            assert all(e["status"] == 400 for e in refused), refused


def sweep_task(server, tmp_path, check: bool = False, key: str = TEST_API_KEY, **args) -> dict:
    """Run the module once, in this process; return its result (failed ones too)."""
    args = {"base_url": server.url, "api_key": key, "_ansible_check_mode": check, **args}
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        sweep_module.main()
    result = json.loads(out.getvalue())
    assert key not in out.getvalue(), "the key is never in the module's output"
    return result


@pytest.mark.integration
def test_through_ansible_playbook_with_check_mode_and_the_key_hidden(server, tmp_path):
    """As a role calls it: Ansible hides the key (no_log) and honours check mode."""
    playbook = tmp_path / "play.yml"
    task = {"base_url": server.url, "api_key": TEST_API_KEY, "config": GRID, "project": "p"}
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "sweep",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [{"name": "sweep", "sweep_fleet.wandb.sweep": task}],
                }
            ]
        )
    )
    for check in (True, False):
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-vvv", str(playbook), *(["--check"] if check else [])],
            cwd=REPO,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert TEST_API_KEY not in proc.stdout + proc.stderr
        assert len(server.sweeps) == (0 if check else 1)


@pytest.mark.integration
def test_the_role_shows_a_refusal_whose_task_output_is_hidden(server, tmp_path):
    """The sweep task hides its result (no_log: its arguments hold the key); a refusal's
    message is shown all the same, and the play stops there."""
    playbook = tmp_path / "play.yml"
    settings = {
        "wandb_sweep_api_key": TEST_API_KEY, "wandb_sweep_base_url": server.url, "wandb_sweep_project": "p",
        "wandb_sweep_name": "n", "wandb_sweep_program": "main.py",
        "wandb_sweep_parameters": {"lr": {"values": [1, 2]}},
    }  # fmt: skip
    play = {"hosts": "localhost", "gather_facts": False, "roles": [{"role": "wandb_sweep"}]}
    after = {"ansible.builtin.debug": {"msg": "the play went on"}}
    playbook.write_text(yaml.safe_dump([{**play, "post_tasks": [after]}]))

    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={VENV_BIN / 'python'}\n"
    )

    def deploy(**extra) -> subprocess.CompletedProcess:
        argv = [str(VENV_BIN / "ansible-playbook"), "-v", "-i", str(inventory), str(playbook)]
        return subprocess.run(
            [*argv, "-e", json.dumps({**settings, **extra})],
            cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    first = deploy()
    assert first.returncode == 0 and len(server.sweeps) == 1, first.stdout
    refused = deploy(wandb_sweep_method="random")
    shown = " ".join(refused.stdout.split())
    assert refused.returncode != 0 and 'method "grid" -> "random"' in shown, shown
    assert "the play went on" not in shown and TEST_API_KEY not in refused.stdout + refused.stderr
    assert len(server.sweeps) == 1


def test_creates_once_then_finds_the_same_sweep(server, tmp_path):
    first = sweep_task(server, tmp_path, config=GRID, project="p")
    assert (first["changed"], first["created"], first["state"]) == (True, True, "RUNNING")
    (sweep,) = server.sweeps.values()
    assert first["sweep_id"] == sweep.id
    assert first["sweep_path"] == f"{server.entity}/p/{sweep.id}"
    assert first["url"] == f"{server.url}/{server.entity}/p/sweeps/{sweep.id}"
    # W&B stores the config the way the wandb client sends it.
    assert sweep.config["parameters"]["layers"]["distribution"] == "int_uniform"
    again = sweep_task(server, tmp_path, config=GRID, project="p")
    assert (again["changed"], again["created"], again["sweep_id"]) == (False, False, sweep.id)
    assert len(server.sweeps) == 1


def test_a_different_config_is_a_different_sweep(server, tmp_path):
    sweep_task(server, tmp_path, config=GRID, project="p")
    other = sweep_task(server, tmp_path, config={**GRID, "name": "other"}, project="p")
    assert other["created"] is True
    assert len(server.sweeps) == 2


def test_check_mode_creates_nothing(server, tmp_path):
    result = sweep_task(server, tmp_path, check=True, config=GRID, project="p")
    assert (result["changed"], result["sweep_id"]) == (True, None)
    assert server.sweeps == {}


def test_joins_an_existing_sweep_by_id(server, tmp_path):
    sweep = server.create_sweep(GRID, project="p")
    for ref in (sweep.path, f"p/{sweep.id}"):
        result = sweep_task(server, tmp_path, sweep_id=ref)
        assert (result["changed"], result["sweep_path"]) == (False, sweep.path)


def test_unknown_sweep_id_fails_clearly(server, tmp_path):
    result = sweep_task(server, tmp_path, sweep_id="e/p/nosuchid")
    assert result["failed"] and "no sweep e/p/nosuchid" in result["msg"]


def test_state_changes_are_idempotent(server, tmp_path):
    sweep = server.create_sweep(GRID, project="p")
    paused = sweep_task(server, tmp_path, sweep_id=sweep.path, state="paused")
    assert (paused["changed"], paused["state"], sweep.state) == (True, "PAUSED", "PAUSED")
    assert sweep_task(server, tmp_path, sweep_id=sweep.path, state="paused")["changed"] is False
    check = sweep_task(server, tmp_path, check=True, sweep_id=sweep.path, state="running")
    assert check["changed"] is True and sweep.state == "PAUSED"
    sweep_task(server, tmp_path, sweep_id=sweep.path, state="finished")
    refused = sweep_task(server, tmp_path, sweep_id=sweep.path, state="paused")
    assert refused["failed"] and "cannot pause a finished sweep" in refused["msg"]
    resumed = sweep_task(server, tmp_path, sweep_id=sweep.path, state="running")
    assert resumed["changed"] and sweep.state == "RUNNING"


def test_invalid_config_is_refused_before_any_request(server, tmp_path):
    result = sweep_task(server, tmp_path, config={**GRID, "method": "grdi"}, project="p")
    assert result["failed"]
    assert "method must be one of grid, random, bayes (got 'grdi')" in result["msg"]
    assert server.requests == []


def test_wrong_key_and_unreachable_server(server, tmp_path):
    result = sweep_task(server, tmp_path, key="wrong_" * 8, config=GRID, project="p")
    assert result["failed"] and "refused the API key" in result["msg"]
    server.stop()
    result = sweep_task(server, tmp_path, config=GRID, project="p", timeout=3, retry_seconds=2)
    assert result["failed"] and "cannot reach the W&B API" in result["msg"]
    assert server.url.split("//")[1] in result["msg"], "the message names the address"
    assert "after 2 retries" in result["msg"]  # asked again after 1 s and after 2 s more


def test_a_redirect_is_refused_and_the_key_never_follows_it(server, tmp_path):
    """W&B's API never redirects; a hostile server or proxy may, to another address (here
    another loopback address), hoping the client sends the key on."""
    elsewhere = Recorder("127.0.0.2")
    try:
        server.inject("redirect", location=f"{elsewhere.url}/graphql")
        result = sweep_task(server, tmp_path, config=GRID, project="p", retry_seconds=5)
    finally:
        elsewhere.stop()
    assert result["failed"] and f"HTTP 302, a redirect to {elsewhere.url}/graphql: refused" in result["msg"]
    assert elsewhere.requests == [], "nothing, the key least of all, went where the redirect pointed"
    assert server.sweeps == {}


def test_server_errors_are_reported(server, tmp_path):
    server.inject("http500", operation="GetSweeps", duration=30)
    result = sweep_task(server, tmp_path, config=GRID, project="p", retry_seconds=2)
    assert result["failed"] and "HTTP 500" in result["msg"] and "retries" in result["msg"]
    assert server.sweeps == {}


def test_an_outage_is_waited_out_with_backoff(server, tmp_path):
    """W&B answers 500 for a while (fault 4 at deploy time): the module asks again and goes on."""
    server.inject("http500", operation="GetSweeps", count=2)
    result = sweep_task(server, tmp_path, config=GRID, project="p", retry_seconds=30)
    assert result["created"] and len(server.sweeps) == 1
    asked = [t for t, _path, operation in server.requests if operation == "GetSweeps"]
    assert len(asked) == 3 and asked[1] - asked[0] >= 1 and asked[2] - asked[1] >= 2  # 1 s, then 2 s


def test_a_rate_limit_is_waited_out_as_long_as_the_server_asks(server, tmp_path):
    """HTTP 429 with Retry-After (W&B's rate limit): the module waits that long, not its own 1 s."""
    server.inject("http429", operation="GetSweeps", count=1, seconds=3)
    result = sweep_task(server, tmp_path, config=GRID, project="p", retry_seconds=30)
    assert result["created"] and len(server.sweeps) == 1
    asked = [t for t, _path, operation in server.requests if operation == "GetSweeps"]
    assert asked[1] - asked[0] >= 3, "asked again before the server said"


def test_a_black_hole_is_waited_out(server, tmp_path):
    """No answer at all (a network that drops packets): the request times out and is asked again."""
    server.inject("blackhole", operation="GetSweeps", count=1, seconds=5)
    result = sweep_task(server, tmp_path, config=GRID, project="p", timeout=2, retry_seconds=30)
    assert result["created"] and len(server.sweeps) == 1


def test_a_lost_answer_to_create_never_makes_a_second_sweep(server, tmp_path):
    """The sweep was made but the answer lost in an outage: the module finds it, not makes another."""
    server.inject("http500_after", operation="UpsertSweep", count=1)
    if server.version == "old":  # the first, newer form is refused before it is carried out
        server.clear_faults()
        server.inject("http500_after", operation="UpsertSweepLegacy", count=1)
    result = sweep_task(server, tmp_path, config=GRID, project="p", retry_seconds=30)
    assert result["created"] and not result.get("failed")
    assert len(server.sweeps) == 1 and result["sweep_id"] == next(iter(server.sweeps))
    assert [f.count for f in server.faults] == [0], "the answer was lost once"


def test_progress_counts_runs_by_state_and_the_grid_size(server, tmp_path):
    config = {**GRID, "parameters": {"lr": {"values": [0.1, 0.01, 0.001]}, "layers": {"value": 2}}}
    created = sweep_task(server, tmp_path, config=config, project="p")
    assert (created["run_count"], created["run_count_expected"], created["runs_by_state"]) == (0, 3, {})
    sweep = server.sweep(created["sweep_id"])
    for run_id, lr, state in (("r1", 0.1, "running"), ("r2", 0.01, "finished")):
        server.assignments.append(
            Assignment(
                sweep=sweep.path,
                run_id=run_id,
                params={"lr": lr},
                agent_id="a",
                agent_host="h",
                start=0,
                state=state,
            )
        )
    # Found by its config (the project's sweep list carries no runs) and by its ID.
    for args in ({"config": config, "project": "p"}, {"sweep_id": sweep.path}):
        result = sweep_task(server, tmp_path, **args)
        assert result["run_count"] == 2 and result["run_count_expected"] == 3
        assert result["runs_by_state"] == {"running": 1, "finished": 1}


def test_create_false_never_creates(server, tmp_path):
    result = sweep_task(server, tmp_path, config=GRID, project="p", create=False, state="paused")
    assert result["failed"] and "no sweep in" in result["msg"] and "has this config" in result["msg"]
    assert server.sweeps == {}


def test_progress_pages_through_many_runs(server, tmp_path):
    """More runs than one page holds (the module read the first 10000 at once, and only those)."""
    from ansible_collections.sweep_fleet.wandb.plugins.module_utils import wandb_api

    config = {**GRID, "parameters": {"lr": {"values": list(range(1200))}}}
    sweep = server.create_sweep(config, project="p")
    for index in range(1200):
        server.assignments.append(
            Assignment(
                sweep=sweep.path,
                run_id=f"r{index}",
                params={"lr": index},
                agent_id="a",
                agent_host="h",
                start=0,
                state="finished" if index % 3 else "crashed",
            )
        )
    result = sweep_task(server, tmp_path, sweep_id=sweep.path)
    assert result["run_count"] == 1200 and result["run_count_expected"] == 1200
    assert result["runs_by_state"] == {"finished": 800, "crashed": 400}
    pages = [r for r in server.requests if r[2] == "GetSweepRuns"]
    assert len(pages) == -(-1200 // min(wandb_api.RUNS_PER_PAGE, PAGE_LIMIT)), (
        "every page, each as large as given"
    )


def test_rerun_by_deletion_deletes_only_crashed_and_failed_runs_and_resumes_the_sweep(server, tmp_path):
    """W&B never runs a grid value again whose run crashed; rerun_delete makes it as W&B documents
    it: the grid has completed, the runs are deleted, the sweep resumed (fault 10)."""
    config = {**GRID, "parameters": {"lr": {"values": [0.1, 0.01, 0.001, 0.0001, 0.00001]}}}
    sweep = server.create_sweep(config, project="p")
    states = {"r1": "finished", "r2": "crashed", "r3": "failed", "r4": "finished", "r5": "running"}
    values = config["parameters"]["lr"]["values"]
    for (run_id, state), lr in zip(states.items(), values, strict=True):
        server.assignments.append(
            Assignment(sweep=sweep.path, run_id=run_id, params={"lr": lr}, agent_id="a", agent_host="h",
                       start=0, state=state)
        )  # fmt: skip
    server.set_state(sweep.path, "FINISHED")
    assert server._suggest(sweep) is None  # every value has a run: W&B hands out nothing more
    # Check mode names exactly the runs it would delete, and deletes nothing.
    delete = {
        "sweep_id": sweep.path,
        "rerun": True,
        "rerun_delete": True,
        "rerun_states": ["crashed", "failed"],
    }
    planned = sweep_task(server, tmp_path, check=True, **delete)
    assert (planned["changed"], planned["rerun_runs"], planned["state"]) == (True, ["r2", "r3"], "RUNNING")
    assert (sweep.state, len(server._latest_assignments(sweep))) == ("FINISHED", 5)
    done = sweep_task(server, tmp_path, **delete)
    assert (done["changed"], done["rerun_runs"], done["state"]) == (True, ["r2", "r3"], "RUNNING")
    assert done["runs_by_state"] == {"finished": 2, "running": 1}
    assert sorted(a.run_id for a in server._latest_assignments(sweep)) == ["r1", "r4", "r5"]
    assert sweep.state == "RUNNING"
    # The grid now hands out those two values again, and only those.
    again = []
    for _ in range(2):
        suggestion = server._suggest(sweep)
        again.append(suggestion.config["lr"]["value"])
        server.assignments.append(
            Assignment(sweep=sweep.path, run_id=f"again{len(again)}", params={"lr": again[-1]},
                       agent_id="a", agent_host="h", start=0)
        )  # fmt: skip
    assert sorted(again) == [0.001, 0.01] and server._suggest(sweep) is None
    # Nothing more to rerun: no change.
    assert sweep_task(server, tmp_path, **delete)["changed"] is False


@pytest.mark.parametrize("state", ["RUNNING", "CANCELED"])
def test_rerun_by_deletion_is_refused_unless_the_grid_has_completed(server, tmp_path, state):
    """W&B hands out a deleted run's value again only after the grid completed and resumed."""
    sweep = server.create_sweep(GRID, project="p")
    server.assignments.append(
        Assignment(sweep=sweep.path, run_id="r1", params={"lr": 0.1}, agent_id="a", agent_host="h", start=0,
                   state="crashed")
    )  # fmt: skip
    server.set_state(sweep.path, state)
    result = sweep_task(
        server, tmp_path, sweep_id=sweep.path, rerun=True, rerun_delete=True, rerun_states=["crashed"]
    )
    assert result["failed"] and "only once a grid has completed" in result["msg"]
    assert [a.run_id for a in server._latest_assignments(sweep)] == ["r1"]


def _runs(server, sweep, states: dict, param: str = "lr") -> None:
    """Give ``sweep`` runs: {run id: (value, state)}."""
    for run_id, (value, state) in states.items():
        server.assignments.append(
            Assignment(sweep=sweep.path, run_id=run_id, params={param: value}, agent_id="a", agent_host="h",
                       start=0, state=state, end=None if state in ("running", "pending", "preempting") else 1)
        )  # fmt: skip


def _grid(values: list, **extra) -> dict:
    return {
        "program": "main.py",
        "method": "grid",
        "name": "shards",
        "parameters": {"lr": {"values": values}},
        **extra,
    }


def test_a_grown_grid_gets_a_successor_seeded_with_the_runs_done_or_under_way(server, tmp_path):
    """Values finished or running are not run again; crashed and preempted ones are; the old
    sweep is stopped once nothing of it runs; a second deploy changes nothing."""
    first = sweep_task(server, tmp_path, config=_grid([1, 2, 3, 4, 5]), project="p")
    old = server.sweep(first["sweep_id"])
    _runs(
        server,
        old,
        {"r1": (1, "finished"), "r2": (2, "running"), "r3": (3, "crashed"), "r4": (4, "preempted")},
    )
    grown = _grid([1, 2, 3, 4, 5, 6, 7])
    planned = sweep_task(server, tmp_path, check=True, config=grown, project="p")
    assert planned["changed"] and planned["sweep_id"] is None
    assert planned["successor"] == {
        "seeded": 2,
        "changes": ["parameters"],
        "grid_values": 7,
        "done": 2,
        "to_run": 5,
    }
    assert planned["predecessor"] == {"sweep_path": old.path, "state": "RUNNING", "running": 1}
    assert planned["rerun_runs"] == ["r3", "r4"] and "- 5" in planned["diff"]["before"]
    assert len(server.sweeps) == 1, "check mode creates nothing"

    made = sweep_task(server, tmp_path, config=grown, project="p")
    assert made["created"] and made["sweep_id"] != old.id
    new = server.sweep(made["sweep_id"])
    assert new.prior == ["r1", "r2"] and new.description == f"sweep-fleet: successor of {old.path}"
    assert made["predecessor"] == {"sweep_path": old.path, "state": "PAUSED", "running": 1}
    assert old.state == "PAUSED", "it hands out nothing more; a run of it is running: not stopped yet"
    assert server._suggest(old) is not None, "values it never handed out run in the new sweep only"
    handed = []
    while (suggestion := server._suggest(new)) is not None:
        handed.append(suggestion.config["lr"]["value"])
        _runs(server, new, {f"n{len(handed)}": (handed[-1], "running")})
    assert sorted(handed) == [3, 4, 5, 6, 7]

    again = sweep_task(server, tmp_path, config=grown, project="p")
    assert (again["changed"], again["sweep_id"], again["predecessor"]["running"]) == (False, new.id, 1)
    next(a for a in server.assignments if a.run_id == "r2").state = "finished"
    last = sweep_task(server, tmp_path, config=grown, project="p")
    assert last["sweep_id"] == new.id and last["predecessor"] == {"sweep_path": old.path, "state": "FINISHED",
                                                                 "running": 0}  # fmt: skip
    assert old.state == "FINISHED" and len(server.sweeps) == 2


@pytest.mark.parametrize(
    ("change", "named"),
    [({"method": "random"}, "method"), ({"metric": {"name": "acc", "goal": "maximize"}}, "metric"),
     ({"program": "other.py"}, "program"), ({"command": ["python", "${program}"]}, "command")],
)  # fmt: skip
def test_a_change_a_successor_cannot_keep_is_refused_unless_replace(server, tmp_path, change, named):
    base = _grid(
        [1, 2], metric={"name": "loss", "goal": "minimize"}, command=["${env}", "python", "${program}"]
    )
    old = sweep_task(server, tmp_path, config=base, project="p")
    refused = sweep_task(server, tmp_path, config={**base, **change}, project="p")
    assert (
        refused["failed"] and f"{named} " in refused["msg"] and "wandb_sweep_replace=true" in refused["msg"]
    )
    assert len(server.sweeps) == 1
    fresh = sweep_task(server, tmp_path, config={**base, **change}, project="p", replace=True)
    assert fresh["created"] and server.sweep(fresh["sweep_id"]).prior == []
    assert (
        server.sweep(fresh["sweep_id"]).description
        == f"sweep-fleet: replaces {server.sweep(old['sweep_id']).path}"
    )
    assert server.sweep(old["sweep_id"]).state == "FINISHED"


def test_rerun_makes_a_successor_and_deletes_nothing_whatever_the_old_sweeps_state(server, tmp_path):
    config = _grid([1, 2, 3])
    old = server.sweep(sweep_task(server, tmp_path, config=config, project="p")["sweep_id"])
    _runs(server, old, {"r1": (1, "finished"), "r2": (2, "failed"), "r3": (3, "preempting")})
    server.set_state(old.path, "CANCELED")
    planned = sweep_task(server, tmp_path, check=True, config=config, project="p", create=False, rerun=True)
    assert (planned["changed"], planned["rerun_runs"], len(server.sweeps)) == (True, ["r2"], 1)
    done = sweep_task(server, tmp_path, config=config, project="p", create=False, rerun=True)
    new = server.sweep(done["sweep_id"])
    assert new.prior == ["r1", "r3"] and new.description == f"sweep-fleet: rerun of {old.path}"
    assert not any(a.deleted for a in server.assignments)
    assert server._suggest(new).config["lr"]["value"] == 2
    # The next deploy joins the rerun's sweep; a second rerun has nothing to run.
    assert sweep_task(server, tmp_path, config=config, project="p")["sweep_id"] == new.id
    assert (
        sweep_task(server, tmp_path, config=config, project="p", create=False, rerun=True)["changed"] is False
    )
