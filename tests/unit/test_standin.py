"""The W&B API stand-in, driven over HTTP and by the real wandb CLI and agent."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

from standin import StandIn, SweepConfigError
from standin.server import validate_sweep_config
from support import TEST_API_KEY, VENV_BIN

GRID = {
    "program": "main.py",
    "method": "grid",
    "parameters": {"data_path": {"values": [f"datasets/part{i}.csv" for i in range(1, 13)]}},
}


@pytest.fixture
def server():
    with StandIn(api_key=TEST_API_KEY) as s:
        yield s


def post(url: str, path: str, body: dict, key: str = TEST_API_KEY, timeout: float = 10):
    auth = base64.b64encode(f"api:{key}".encode()).decode()
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def gql(server, query: str, variables: dict | None = None, key: str = TEST_API_KEY):
    return post(server.url, "/graphql", {"query": query, "variables": variables or {}}, key)


def create_agent(server, sweep_id: str, host: str):
    status, body = gql(
        server,
        "mutation CreateAgent($sweep: String!) { createAgent { agent { id } } }",
        {"sweep": sweep_id, "host": host, "projectName": "p", "entityName": "e"},
    )
    return status, body


def agent_on(server, sweep_id: str, host: str) -> str:
    """A registered agent's ID."""
    return create_agent(server, sweep_id, host)[1]["data"]["createAgent"]["agent"]["id"]


def upsert_run(server, run_id: str, **extra) -> None:
    """What a run's wandb.init() sends: the run comes online."""
    gql(
        server,
        "mutation UpsertBucket($name: String) { upsertBucket { bucket { id } } }",
        {"name": run_id, "project": "p", "entity": "e", **extra},
    )


def heartbeat(server, agent_id: str, running: dict | None = None) -> list[dict]:
    status, body = gql(
        server,
        "mutation Heartbeat($id: ID!) { agentHeartbeat { commands } }",
        {"id": agent_id, "metrics": "{}", "runState": json.dumps(running or {})},
    )
    assert status == 200, body
    return json.loads(body["data"]["agentHeartbeat"]["commands"])


def wandb_cli(server, *args: str, cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        WANDB_BASE_URL=server.url,
        WANDB_API_KEY=TEST_API_KEY,
        WANDB_ERROR_REPORTING="false",
        PATH=f"{VENV_BIN}:{os.environ['PATH']}",
    )
    return subprocess.run(
        [str(VENV_BIN / "wandb"), *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout
    )


# -- validation ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({**GRID, "method": "grdi"}, "method: 'grdi' is not one of"),
        ({**GRID, "metric": {"goal": "maximize"}}, "metric: 'name' is a required property"),
        ({**GRID, "parameters": {"lr": {"min": 1.0, "max": 0.1}}}, "lr"),
        ({"method": "grid", "parameters": GRID["parameters"]}, "program:"),
    ],
)
def test_invalid_configs_are_refused_naming_the_field(config, field):
    problems = validate_sweep_config(config)
    assert any(field in p for p in problems), problems


def test_malformed_sweep_yaml_gets_a_wandb_shaped_error(server, tmp_path):
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({**GRID, "method": "grdi"}))
    proc = wandb_cli(server, "sweep", "--project", "p", "sweep.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Invalid sweep config: method: 'grdi' is not one of" in proc.stderr
    status, body = gql(
        server,
        "mutation UpsertSweep($config: String) { upsertSweep { sweep { name } } }",
        {"config": "program: m.py\nmethod: [unclosed"},
    )
    assert status == 400
    assert body["errors"][0]["path"] == ["upsertSweep"]
    assert "not YAML" in body["errors"][0]["message"]
    assert server.sweeps == {}


def test_create_sweep_refuses_bad_config_directly():
    with pytest.raises(SweepConfigError, match="method"):
        StandIn().create_sweep({**GRID, "method": "nope"})


# -- auth ------------------------------------------------------------------------------
def test_wrong_api_key_is_refused(server):
    status, body = gql(server, "query Viewer { viewer { id } }", key="wrong" * 10)
    assert status == 401
    status, body = gql(server, "query Viewer { viewer { id entity } }")
    assert status == 200
    assert body["data"]["viewer"]["entity"] == server.entity


# -- assignment --------------------------------------------------------------------------
def test_simultaneous_agents_never_get_the_same_parameters(server):
    sweep = server.create_sweep(GRID, project="p")
    agents = [
        create_agent(server, sweep.id, f"host{i}")[1]["data"]["createAgent"]["agent"]["id"] for i in range(16)
    ]
    barrier = threading.Barrier(len(agents))
    got: dict[str, list] = {}
    errors: list[BaseException] = []

    def ask(agent_id: str) -> None:
        barrier.wait()
        try:
            got[agent_id] = heartbeat(server, agent_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(got) == len(agents)
    runs = [c for cmds in got.values() for c in cmds if c["type"] == "run"]
    values = [c["args"]["data_path"]["value"] for c in runs]
    assert len(runs) == 12, "12 grid values for 16 agents: 12 get a run, 4 wait"
    assert sorted(values) == sorted(GRID["parameters"]["data_path"]["values"])
    assert len({c["run_id"] for c in runs}) == 12


def test_grid_completes_then_agents_exit(server):
    sweep = server.create_sweep({**GRID, "parameters": {"x": {"values": [1, 2]}}}, project="p")
    agent = agent_on(server, sweep.id, "h1")
    first = heartbeat(server, agent)
    assert [c["type"] for c in first] == ["run"]
    run1 = first[0]["run_id"]
    assert heartbeat(server, agent, {run1: True}) == []  # still running: nothing new
    second = heartbeat(server, agent, {})  # run1 ended, gets the next value
    run2 = second[0]["run_id"]
    assert heartbeat(server, agent, {}) == [{"type": "exit"}]
    assert sweep.state == "FINISHED"
    records = server.records(sweep.id)
    assert [r["run_id"] for r in records] == [run1, run2]
    assert {r["params"]["x"] for r in records} == {1, 2}
    assert all(r["end"] is not None and r["end"] >= r["start"] for r in records)
    assert all(r["agent_host"] == "h1" and r["agent_id"] == agent for r in records)


def test_paused_sweep_keeps_agents_idle_until_resumed(server):
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep.id, "h1")
    server.set_state(sweep.id, "PAUSED")
    assert heartbeat(server, agent) == []
    assert server.records() == []
    server.set_state(sweep.id, "RUNNING")
    assert heartbeat(server, agent)[0]["type"] == "run"


def test_canceled_sweep_stops_runs_then_exits_agents(server):
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep.id, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    server.set_state(sweep.id, "CANCELED")
    assert heartbeat(server, agent, {run_id: True}) == [{"type": "stop", "run_id": run_id}]
    assert heartbeat(server, agent, {}) == [{"type": "exit"}]


@pytest.mark.parametrize("state", ["FINISHED", "CANCELED"])
def test_ended_sweep_refuses_new_agents_like_wandb(server, tmp_path, state):
    sweep = server.create_sweep(GRID, project="p")
    server.set_state(sweep.id, state)
    status, body = create_agent(server, sweep.id, "h1")
    assert status == 400
    assert body["errors"][0]["message"] == f"Sweep {sweep.path} is not running"
    # The real agent ends at once with exit code 1, as against W&B.
    proc = wandb_cli(server, "agent", sweep.path, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"Sweep {sweep.path} is not running" in proc.stderr


def test_sweep_state_changes_through_the_cli(server, tmp_path):
    sweep = server.create_sweep(GRID, project="p")
    for flag, state in [("--pause", "PAUSED"), ("--resume", "RUNNING"), ("--cancel", "CANCELED")]:
        proc = wandb_cli(server, "sweep", flag, sweep.path, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert server.sweep(sweep.id).state == state


def test_preempting_run_is_reissued_to_another_agent(server):
    sweep = server.create_sweep(GRID, project="p")
    a1 = agent_on(server, sweep.id, "h1")
    a2 = agent_on(server, sweep.id, "h2")
    cmd = heartbeat(server, a1)[0]
    status, _ = post(server.url, f"/files/e/p/{cmd['run_id']}/file_stream", {"files": {}, "preempting": True})
    assert status == 200
    # The run ended after marking itself preempting; its own host gets new work...
    fresh = heartbeat(server, a1, {})[0]
    assert fresh["run_id"] != cmd["run_id"]
    assert fresh["args"] != cmd["args"]
    # ...and an agent on another host gets the preempted run again, same id and args.
    again = heartbeat(server, a2)[0]
    assert again["run_id"] == cmd["run_id"]
    assert again["args"] == cmd["args"]
    first, second = [r for r in server.records(sweep.id) if r["run_id"] == cmd["run_id"]]
    assert first["preempting"] is True
    assert first["state"] == "preempted"
    assert (second["agent_host"], second["state"]) == ("h2", "running")


def test_preempted_run_goes_back_to_its_own_host_when_nothing_else_can_take_it(server):
    sweep = server.create_sweep({**GRID, "parameters": {"x": {"values": [1]}}}, project="p")
    agent = agent_on(server, sweep.id, "h1")
    cmd = heartbeat(server, agent)[0]
    post(server.url, f"/files/e/p/{cmd['run_id']}/file_stream", {"files": {}, "preempting": True})
    again = heartbeat(server, agent, {})[0]
    assert (again["run_id"], again["args"]) == (cmd["run_id"], cmd["args"])
    assert sweep.state == "RUNNING"


def test_online_run_reports_exit_code(server):
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep.id, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, run_id)
    post(server.url, f"/files/e/p/{run_id}/file_stream", {"files": {}, "complete": True, "exitcode": 3})
    heartbeat(server, agent, {})
    (record,) = [r for r in server.records() if r["run_id"] == run_id]
    assert (record["online"], record["exitcode"], record["state"]) == (True, 3, "failed")


def test_a_runs_final_record_ends_it_while_its_agent_drains(server):
    """A draining agent stops heartbeating; the run's own file_stream still ends it."""
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep.id, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, run_id, tags=["code-v2"])
    post(server.url, f"/files/e/p/{run_id}/file_stream", {"files": {}, "complete": True, "exitcode": 0})
    (record,) = server.records(sweep.id)
    assert (record["state"], record["tags"]) == ("finished", ["code-v2"])
    assert record["end"] is not None


def test_a_preempting_run_that_exits_nonzero_is_requeued_without_its_agent(server):
    sweep = server.create_sweep(GRID, project="p")
    a1 = agent_on(server, sweep.id, "h1")
    a2 = agent_on(server, sweep.id, "h2")
    cmd = heartbeat(server, a1)[0]
    post(server.url, f"/files/e/p/{cmd['run_id']}/file_stream", {"files": {}, "preempting": True})
    post(server.url, f"/files/e/p/{cmd['run_id']}/file_stream", {"complete": True, "exitcode": 143})
    assert server.records(sweep.id)[0]["state"] == "preempted"
    again = heartbeat(server, a2)[0]
    assert (again["run_id"], again["args"]) == (cmd["run_id"], cmd["args"])


def test_a_run_nobody_reports_on_crashes_after_the_run_timeout():
    with StandIn(api_key=TEST_API_KEY, run_timeout=0.5) as server:
        sweep = server.create_sweep(GRID, project="p")
        agent = agent_on(server, sweep.id, "h1")
        run_id = heartbeat(server, agent)[0]["run_id"]
        upsert_run(server, run_id)
        assert server.records(sweep.id)[0]["state"] == "running"
        server.wait_for(
            lambda s: s.records(sweep.id)[0]["state"] == "crashed", timeout=5, what="the silent run to crash"
        )


def test_deleted_runs_of_a_finished_grid_run_again_after_resume(server):
    sweep = server.create_sweep({**GRID, "parameters": {"x": {"values": [1, 2]}}}, project="p")
    agent = agent_on(server, sweep.id, "h1")
    first = heartbeat(server, agent)[0]
    second = heartbeat(server, agent, {})[0]
    assert heartbeat(server, agent, {}) == [{"type": "exit"}] and sweep.state == "FINISHED"
    server.delete_runs(sweep.id, [first["run_id"]])
    server.set_state(sweep.id, "RUNNING")
    again = heartbeat(server, agent_on(server, sweep.id, "h2"))[0]
    assert again["args"] == first["args"] and again["run_id"] != first["run_id"]
    assert [r["params"]["x"] for r in server.records(sweep.id)] == [second["args"]["x"]["value"], 1]


# -- faults ------------------------------------------------------------------------------
def test_http500_fault_for_a_count(server):
    server.inject("http500", operation="Viewer", count=2)
    query = "query Viewer { viewer { id } }"
    assert [gql(server, query)[0] for _ in range(3)] == [500, 500, 200]


def test_delay_fault(server):
    server.inject("delay", operation="Viewer", count=1, seconds=0.5)
    started = time.monotonic()
    assert gql(server, "query Viewer { viewer { id } }")[0] == 200
    assert time.monotonic() - started >= 0.5


def test_refuse_fault_then_recovers(server):
    server.inject("refuse", seconds=1.0)
    with pytest.raises(urllib.error.URLError) as err:
        gql(server, "query Viewer { viewer { id } }")
    assert isinstance(err.value.reason, ConnectionRefusedError)
    status = server.wait_for(lambda s: _viewer_ok(s), timeout=10, what="stand-in listening again")
    assert status


def _viewer_ok(s) -> bool:
    try:
        return gql(s, "query Viewer { viewer { id } }")[0] == 200
    except urllib.error.URLError:
        return False


def test_control_api_over_http(server):
    sweep = server.create_sweep(GRID, project="p")
    status, _ = post(server.url, f"/_standin/sweeps/{sweep.id}/state", {"state": "PAUSED"})
    assert status == 200 and sweep.state == "PAUSED"
    status, body = post(server.url, f"/_standin/sweeps/{sweep.id}/state", {"state": "BOGUS"})
    assert status == 400 and "BOGUS" in body["error"]
    status, _ = post(server.url, "/_standin/faults", {"kind": "http500", "operation": "Viewer", "count": 1})
    assert status == 200
    assert gql(server, "query Viewer { viewer { id } }")[0] == 500
    with urllib.request.urlopen(server.url + "/_standin/sweeps") as resp:
        assert json.loads(resp.read())[0]["state"] == "PAUSED"


def test_real_agent_runs_a_small_grid(server, tmp_path):
    """The real CLI and agent, with online runs, on this machine."""
    (tmp_path / "main.py").write_text(
        "import wandb\nrun = wandb.init()\nrun.log({'loss': run.config.x})\nrun.finish()\n"
    )
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump({"program": "main.py", "method": "grid", "parameters": {"x": {"values": [1, 2]}}})
    )
    proc = wandb_cli(server, "sweep", "--project", "p", "sweep.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep_path = proc.stderr.split("wandb agent ")[1].split()[0]
    proc = wandb_cli(server, "agent", sweep_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = server.records(sweep_path)
    assert sorted(r["params"]["x"] for r in records) == [1, 2]
    assert {(r["state"], r["online"], r["exitcode"]) for r in records} == {("finished", True, 0)}
    assert server.unknown_operations == []
