"""The W&B API stand-in, driven over HTTP and by the real wandb CLI, agent and SDK.

The tests marked "(was forgiving)" each failed against an earlier, forgiving stand-in: it
took any query, ignored entity and project, called a crashed run finished, never enforced
run_cap, refused configs W&B accepts, crashed silent runs after seconds instead of W&B's
five minutes, crashed runs not yet started, did not requeue a silent preempting run, let a
cancelled sweep's runs save, paused pending sweeps and took configs it then ignored.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml

from standin import StandIn
from support import TEST_API_KEY, VENV_BIN

GRID = {
    "program": "main.py",
    "method": "grid",
    "parameters": {"data_path": {"values": [f"datasets/part{i}.csv" for i in range(1, 13)]}},
}

# The operations as the wandb agent and SDK send them (wandb/apis/public/sweeps.py and
# the SDK's UpsertBucket), so these tests speak the client's dialect.
CREATE_AGENT = """mutation CreateAgent($host: String!, $projectName: String, $entityName: String,
    $sweep: String!) {
  createAgent(input: {host: $host, projectName: $projectName, entityName: $entityName, sweep: $sweep}) {
    agent { id } } }"""
HEARTBEAT = """mutation Heartbeat($id: ID!, $metrics: JSONString, $runState: JSONString) {
  agentHeartbeat(input: {id: $id, metrics: $metrics, runState: $runState}) { agent { id } commands } }"""
UPSERT_BUCKET = """mutation UpsertBucket($name: String, $project: String, $entity: String, $sweep: String,
    $tags: [String!]) {
  upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, sweep: $sweep, tags: $tags}) {
    bucket { id name } inserted } }"""
RESUME_STATUS = """query RunResumeStatus($project: String, $entity: String, $name: String!) {
  model(name: $project, entityName: $entity) {
    bucket(name: $name, missingOk: true) { id name historyLineCount } } }"""
SWEEP_STATE = """query SweepState($entity: String, $project: String, $name: String!) {
  project(name: $project, entityName: $entity) { sweep(sweepName: $name) { id state runCountExpected } } }"""


class Clock:
    """W&B's clock, for a stand-in: moved on by the test, never slept through."""

    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def server(clock):
    with StandIn(api_key=TEST_API_KEY, clock=clock) as s:
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


def create_agent(server, sweep, host: str, entity: str | None = None, project: str | None = None):
    return gql(
        server,
        CREATE_AGENT,
        {
            "sweep": sweep.id,
            "host": host,
            "projectName": project or sweep.project,
            "entityName": entity or sweep.entity,
        },
    )


def agent_on(server, sweep, host: str) -> str:
    status, body = create_agent(server, sweep, host)
    assert status == 200, body
    return body["data"]["createAgent"]["agent"]["id"]


def upsert_run(server, sweep, run_id: str, **extra) -> None:
    """What a run's wandb.init() sends: the run comes online."""
    status, body = gql(
        server,
        UPSERT_BUCKET,
        {"name": run_id, "project": sweep.project, "entity": sweep.entity, "sweep": sweep.id, **extra},
    )
    assert status == 200, body


def stream(server, sweep, run_id: str, body: dict):
    return post(server.url, f"/files/{sweep.entity}/{sweep.project}/{run_id}/file_stream", body)


def heartbeat(server, agent_id: str, running: dict | None = None) -> list[dict]:
    status, body = gql(
        server, HEARTBEAT, {"id": agent_id, "metrics": "{}", "runState": json.dumps(running or {})}
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


# -- the schema (was forgiving) --------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("query Viewer { viewer { id nosuchfield } }", "Cannot query field 'nosuchfield' on type 'User'"),
        ('query P { project(name: "p", bogus: 1) { id } }', "Unknown argument 'bogus'"),
        (
            'query GetSweep { project(name: "p") { sweep(sweepName: "x") {'
            ' runs(first: 10000, filters: "{}") { edges { node { name } } } } } }',
            "Unknown argument 'filters'",
        ),
        ("mutation CreateAgent($sweep: String!) { createAgent { agent { id } } }", "createAgent(input:)"),
        ("query { viewer { id }", "Syntax Error"),
    ],
)
def test_queries_outside_the_schema_are_refused(server, query, problem):
    status, body = gql(server, query)
    assert status == 400
    assert any(problem in e["message"] for e in body["errors"]), body
    (refused,) = server.take_errors()
    assert refused["status"] == 400


def test_an_older_server_lacks_the_newer_fields():
    with StandIn(api_key=TEST_API_KEY, version="old") as old:
        old.create_sweep(GRID, project="p")
        status, body = gql(old, SWEEP_STATE, {"entity": old.entity, "project": "p", "name": "x"})
        assert status == 400 and "runCountExpected" in body["errors"][0]["message"]
        old.take_errors()


# -- entity, project and permissions (was forgiving) ------------------------------------------
@pytest.mark.integration
def test_a_sweep_is_found_only_in_its_own_entity_and_project(server, tmp_path):
    sweep = server.create_sweep(GRID, project="p")
    status, body = create_agent(server, sweep, "h1", entity="nobody", project="elsewhere")
    assert status == 404 and "not found" in body["errors"][0]["message"]
    status, body = create_agent(server, sweep, "h1", project="elsewhere")
    assert status == 404
    found = gql(server, SWEEP_STATE, {"entity": server.entity, "project": "elsewhere", "name": sweep.id})[1]
    assert found["data"] == {"project": None}
    # The real CLI and agent on a wrong path: the sweep is not paused, no agent runs.
    proc = wandb_cli(server, "sweep", "--pause", f"wrong-entity/wrong-project/{sweep.id}", cwd=tmp_path)
    assert proc.returncode != 0 and sweep.state == "RUNNING"
    proc = wandb_cli(server, "agent", f"nobody/elsewhere/{sweep.id}", cwd=tmp_path)
    assert proc.returncode != 0 and server.records() == []
    assert {e["status"] for e in server.take_errors()} <= {403, 404}


def test_the_key_cannot_write_to_another_entity(server):
    status, body = gql(
        server,
        "mutation UpsertSweep($config: String, $entityName: String, $projectName: String) {"
        " upsertSweep(input: {config: $config, entityName: $entityName, projectName: $projectName})"
        " { sweep { name } } }",
        {"config": yaml.safe_dump(GRID), "entityName": "someone-else", "projectName": "p"},
    )
    assert status == 403 and "permission denied" in body["errors"][0]["message"]
    assert server.sweeps == {}
    server.take_errors()


def test_wrong_api_key_is_refused(server):
    status, body = gql(server, "query Viewer { viewer { id } }", key="wrong" * 10)
    assert status == 401
    status, body = gql(server, "query Viewer { viewer { id entity } }")
    assert status == 200
    assert body["data"]["viewer"]["entity"] == server.entity


# -- state changes (was forgiving) -----------------------------------------------------------
@pytest.mark.integration
def test_a_cancelled_sweep_cannot_be_resumed_but_a_finished_one_can(server, tmp_path):
    cancelled = server.create_sweep(GRID, project="p")
    server.set_state(cancelled.id, "CANCELED")
    proc = wandb_cli(server, "sweep", "--resume", cancelled.path, cwd=tmp_path)
    assert proc.returncode != 0 and cancelled.state == "CANCELED"
    assert "canceled: it cannot become running" in proc.stderr
    finished = server.create_sweep(GRID, project="p")
    server.set_state(finished.id, "FINISHED")
    proc = wandb_cli(server, "sweep", "--resume", finished.path, cwd=tmp_path)
    assert proc.returncode == 0 and finished.state == "RUNNING", proc.stderr
    server.take_errors()


@pytest.mark.integration
def test_sweep_state_changes_through_the_cli(server, tmp_path):
    sweep = server.create_sweep(GRID, project="p")
    for flag, state in [("--pause", "PAUSED"), ("--resume", "RUNNING"), ("--cancel", "CANCELED")]:
        proc = wandb_cli(server, "sweep", flag, sweep.path, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert server.sweep(sweep.id).state == state


# -- configs: W&B warns rather than refuses (was forgiving the other way) -------------------
@pytest.mark.integration
def test_a_malformed_config_is_accepted_with_warnings_as_wandb_does(server, tmp_path):
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({**GRID, "method": "grdi"}))
    proc = wandb_cli(server, "sweep", "--project", "p", "sweep.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Malformed sweep config detected" in proc.stderr and "grdi" in proc.stderr
    (sweep,) = server.sweeps.values()
    assert sweep.warnings and sweep.config["method"] == "grdi"


def test_a_config_that_is_not_yaml_is_refused(server):
    status, body = gql(
        server,
        "mutation UpsertSweep($config: String) { upsertSweep(input: {config: $config}) { sweep { name } } }",
        {"config": "program: m.py\nmethod: [unclosed"},
    )
    assert status == 400
    assert body["errors"][0]["path"] == ["upsertSweep"] and "not YAML" in body["errors"][0]["message"]
    assert server.sweeps == {}
    server.take_errors()


def test_run_count_expected_is_the_grid_size(server):
    sweep = server.create_sweep(
        {**GRID, "parameters": {"a": {"values": [1, 2, 3]}, "b": {"min": 1, "max": 4}}}
    )
    body = gql(server, SWEEP_STATE, {"entity": sweep.entity, "project": sweep.project, "name": sweep.id})[1]
    assert body["data"]["project"]["sweep"]["runCountExpected"] == 12
    random_sweep = server.create_sweep({**GRID, "method": "random", "run_cap": 5})
    assert random_sweep.expected == 5


# -- assignment ------------------------------------------------------------------------------
def test_simultaneous_agents_never_get_the_same_parameters(server):
    sweep = server.create_sweep(GRID, project="p")
    agents = [agent_on(server, sweep, f"host{i}") for i in range(16)]
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
    agent = agent_on(server, sweep, "h1")
    first = heartbeat(server, agent)
    assert [c["type"] for c in first] == ["run"]
    run1 = first[0]["run_id"]
    upsert_run(server, sweep, run1)
    assert heartbeat(server, agent, {run1: True}) == []  # still running: nothing new
    stream(server, sweep, run1, {"complete": True, "exitcode": 0})
    second = heartbeat(server, agent, {})  # run1 ended, gets the next value
    run2 = second[0]["run_id"]
    upsert_run(server, sweep, run2)
    stream(server, sweep, run2, {"complete": True, "exitcode": 0})
    assert heartbeat(server, agent, {}) == [{"type": "exit"}]
    assert sweep.state == "FINISHED"
    records = server.records(sweep.id)
    assert [(r["run_id"], r["state"], r["exitcode"]) for r in records] == [
        (run1, "finished", 0),
        (run2, "finished", 0),
    ]
    assert {r["params"]["x"] for r in records} == {1, 2}
    assert all(r["agent_host"] == "h1" and r["agent_id"] == agent for r in records)


def test_paused_sweep_keeps_agents_idle_until_resumed(server):
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep, "h1")
    server.set_state(sweep.id, "PAUSED")
    assert heartbeat(server, agent) == []
    assert server.records() == []
    server.set_state(sweep.id, "RUNNING")
    assert heartbeat(server, agent)[0]["type"] == "run"


def test_a_cancelled_sweep_kills_its_runs_at_once_and_its_agents_exit(server):
    """(was forgiving) Cancelling ends the runs abruptly, with no chance to run signal
    handlers (W&B docs, pause-resume-and-cancel-sweeps): the agent is told to exit (it
    SIGKILLs its runs), not to stop them (a SIGTERM they could save on); they are killed."""
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, sweep, run_id)
    stream(server, sweep, run_id, {"preempting": True})
    server.set_state(sweep.id, "CANCELED")
    (record,) = server.records(sweep.id)
    assert record["state"] == "killed" and record["end"] is not None
    assert heartbeat(server, agent, {run_id: True}) == [{"type": "exit"}]
    stream(server, sweep, run_id, {"complete": True, "exitcode": 143})  # too late to count
    (record,) = server.records(sweep.id)
    assert (record["state"], record["exitcode"]) == ("killed", None)
    assert not sweep.requeue


def test_an_agent_told_to_exit_gets_no_run(server):
    sweep = server.create_sweep({**GRID, "parameters": {"x": {"values": [1]}}}, project="p")
    agent = agent_on(server, sweep, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, sweep, run_id)
    stream(server, sweep, run_id, {"complete": True, "exitcode": 0})
    assert heartbeat(server, agent, {}) == [{"type": "exit"}]
    server.set_state(sweep.id, "RUNNING")  # resumed: more work may come, but not to this agent
    server.delete_runs(sweep.id, [run_id])
    assert heartbeat(server, agent, {}) == [{"type": "exit"}]
    assert heartbeat(server, agent_on(server, sweep, "h2"))[0]["type"] == "run"


@pytest.mark.parametrize("state", ["FINISHED", "CANCELED"])
@pytest.mark.integration
def test_ended_sweep_refuses_new_agents_like_wandb(server, tmp_path, state):
    sweep = server.create_sweep(GRID, project="p")
    server.set_state(sweep.id, state)
    status, body = create_agent(server, sweep, "h1")
    assert status == 400
    assert body["errors"][0]["message"] == f"Sweep {sweep.path} is not running"
    # The real agent ends at once with exit code 1, as against W&B.
    proc = wandb_cli(server, "agent", sweep.path, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"Sweep {sweep.path} is not running" in proc.stderr
    server.take_errors()


# -- run outcomes ----------------------------------------------------------------------------
def test_a_run_handed_out_is_pending_until_it_starts_and_crashed_only_when_stale(server, clock):
    """(was forgiving) A run handed out but not started is pending (W&B's run states); one
    that dies before wandb.init() (an ImportError, the wrong interpreter) sends nothing and
    is crashed after W&B's stale timeout, never at once and never finished."""
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    assert server.records(sweep.id)[0]["state"] == "pending"
    heartbeat(server, agent, {})  # the process is gone; it never came online
    clock.advance(server.run_timeout - 1)
    record = server.records(sweep.id)[0]
    assert (record["run_id"], record["state"], record["online"]) == (run_id, "pending", False)
    clock.advance(2)
    record = server.records(sweep.id)[0]
    assert (record["state"], record["online"], record["exitcode"]) == ("crashed", False, None)


def test_the_stale_timeout_is_wandbs_five_minutes(clock):
    """W&B marks a run that stops reporting crashed after about five minutes (docs: signal
    handling and sweep runs, "Unresponsive runs and server-side timeout"). Tests that
    shorten it do so per stand-in; the default stays W&B's."""
    with StandIn(api_key=TEST_API_KEY, clock=clock) as server:
        assert server.run_timeout == 300
        sweep = server.create_sweep(GRID, project="p")
        agent = agent_on(server, sweep, "h1")
        run_id = heartbeat(server, agent)[0]["run_id"]
        upsert_run(server, sweep, run_id)
        heartbeat(server, agent, {})  # its agent was killed, the run with it: nothing more comes
        clock.advance(299)
        assert server.records(sweep.id)[0]["state"] == "running"
        clock.advance(2)
        assert server.records(sweep.id)[0]["state"] == "crashed"


def test_a_run_that_reports_stays_running_however_long_it_takes(server, clock):
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, sweep, run_id)
    for _ in range(10):  # an hour of training, reporting every six minutes... is too rare
        clock.advance(200)
        stream(server, sweep, run_id, {"files": {}})
        heartbeat(server, agent, {run_id: True})
    assert server.records(sweep.id)[0]["state"] == "running"


def test_a_preempting_run_that_goes_silent_is_requeued_after_the_stale_timeout(server, clock):
    """(was forgiving) mark_preempting(), then the machine is gone (no exit code): W&B marks
    the run preempted after its timeout and requeues it (W&B docs, Resume preemptible Sweeps
    runs). The same run goes to another agent: whoever recovers must not run it again."""
    sweep = server.create_sweep(GRID, project="p")
    a1, a2 = agent_on(server, sweep, "h1"), agent_on(server, sweep, "h2")
    cmd = heartbeat(server, a1)[0]
    upsert_run(server, sweep, cmd["run_id"])
    stream(server, sweep, cmd["run_id"], {"preempting": True})
    heartbeat(server, a1, {})
    assert server.records(sweep.id)[0]["state"] == "running"
    clock.advance(server.run_timeout + 1)
    first = server.records(sweep.id)[0]
    assert (first["state"], first["preempting"], first["exitcode"]) == ("preempted", True, None)
    again = heartbeat(server, a2)[0]
    assert (again["run_id"], again["args"]) == (cmd["run_id"], cmd["args"])


def test_online_run_reports_exit_code(server):
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, sweep, run_id)
    stream(server, sweep, run_id, {"files": {}, "complete": True, "exitcode": 3})
    heartbeat(server, agent, {})
    (record,) = [r for r in server.records() if r["run_id"] == run_id]
    assert (record["online"], record["exitcode"], record["state"]) == (True, 3, "failed")


def test_a_runs_final_record_ends_it_while_its_agent_drains(server):
    """A draining agent stops heartbeating; the run's own file_stream still ends it."""
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, sweep, run_id, tags=["code-v2"])
    stream(server, sweep, run_id, {"files": {}, "complete": True, "exitcode": 0})
    (record,) = server.records(sweep.id)
    assert (record["state"], record["tags"]) == ("finished", ["code-v2"])
    assert record["end"] is not None


def test_preempting_run_is_reissued_to_another_agent_and_resumes(server):
    sweep = server.create_sweep(GRID, project="p")
    a1 = agent_on(server, sweep, "h1")
    a2 = agent_on(server, sweep, "h2")
    cmd = heartbeat(server, a1)[0]
    upsert_run(server, sweep, cmd["run_id"])
    history = [json.dumps({"_step": step, "loss": 1 / (step + 1)}) for step in range(7)]
    stream(server, sweep, cmd["run_id"], {"files": {"wandb-history.jsonl": {"content": history}}})
    stream(server, sweep, cmd["run_id"], {"files": {}, "preempting": True})
    stream(server, sweep, cmd["run_id"], {"complete": True, "exitcode": 143})
    # The run ended after marking itself preempting; its own host gets new work...
    fresh = heartbeat(server, a1, {})[0]
    assert fresh["run_id"] != cmd["run_id"]
    assert fresh["args"] != cmd["args"]
    # ...and an agent on another host gets the preempted run again, same id and args.
    again = heartbeat(server, a2)[0]
    assert again["run_id"] == cmd["run_id"]
    assert again["args"] == cmd["args"]
    first, second = [r for r in server.records(sweep.id) if r["run_id"] == cmd["run_id"]]
    assert (first["preempting"], first["state"], first["exitcode"]) == (True, "preempted", 143)
    assert (second["agent_host"], second["state"]) == ("h2", "pending")  # handed out, not started yet
    # (was forgiving) The SDK asks whether the run exists to resume it: it does, with the
    # history it has so far, which the resumed run continues after.
    body = gql(
        server, RESUME_STATUS, {"project": sweep.project, "entity": sweep.entity, "name": cmd["run_id"]}
    )[1]
    assert body["data"]["model"]["bucket"]["name"] == cmd["run_id"]
    assert body["data"]["model"]["bucket"]["historyLineCount"] == len(history)
    body = gql(
        server, RESUME_STATUS, {"project": sweep.project, "entity": sweep.entity, "name": "neverseen"}
    )[1]
    assert body["data"]["model"]["bucket"] is None


def test_preempted_run_goes_back_to_its_own_host_when_nothing_else_can_take_it(server):
    sweep = server.create_sweep({**GRID, "parameters": {"x": {"values": [1]}}}, project="p")
    agent = agent_on(server, sweep, "h1")
    cmd = heartbeat(server, agent)[0]
    upsert_run(server, sweep, cmd["run_id"])
    stream(server, sweep, cmd["run_id"], {"preempting": True})
    stream(server, sweep, cmd["run_id"], {"complete": True, "exitcode": 143})
    again = heartbeat(server, agent, {})[0]
    assert (again["run_id"], again["args"]) == (cmd["run_id"], cmd["args"])
    assert sweep.state == "RUNNING"


def test_run_cap_ends_a_random_sweep(server):
    """(was forgiving) run_cap was never enforced: a random sweep never ended."""
    sweep = server.create_sweep(
        {"program": "m.py", "method": "random", "run_cap": 3, "parameters": {"lr": {"min": 0.0, "max": 1.0}}}
    )
    agent = agent_on(server, sweep, "h1")
    ran = []
    while commands := heartbeat(server, agent, {}):
        if commands[0]["type"] == "exit":
            break
        ran.append(commands[0]["run_id"])
        upsert_run(server, sweep, ran[-1])
        stream(server, sweep, ran[-1], {"complete": True, "exitcode": 0})
    assert len(ran) == 3 and sweep.state == "FINISHED"


def test_deleted_runs_of_a_finished_grid_run_again_after_resume(server):
    sweep = server.create_sweep({**GRID, "parameters": {"x": {"values": [1, 2]}}}, project="p")
    agent = agent_on(server, sweep, "h1")
    first = heartbeat(server, agent)[0]
    upsert_run(server, sweep, first["run_id"])
    stream(server, sweep, first["run_id"], {"complete": True, "exitcode": 2})
    second = heartbeat(server, agent, {})[0]
    upsert_run(server, sweep, second["run_id"])
    stream(server, sweep, second["run_id"], {"complete": True, "exitcode": 0})
    assert heartbeat(server, agent, {}) == [{"type": "exit"}] and sweep.state == "FINISHED"
    server.delete_runs(sweep.id, [first["run_id"]])
    server.set_state(sweep.id, "RUNNING")
    again = heartbeat(server, agent_on(server, sweep, "h2"))[0]
    assert again["args"] == first["args"] and again["run_id"] != first["run_id"]
    records = server.records(sweep.id)
    assert [r["params"]["x"] for r in records if not r["deleted"]] == [second["args"]["x"]["value"], 1]
    assert [(r["run_id"], r["state"]) for r in records if r["deleted"]] == [(first["run_id"], "failed")]


CREATE_SEEDED = """mutation UpsertSweep($config: String, $description: String, $entityName: String,
    $projectName: String, $priorRunsFilters: JSONString) {
  upsertSweep(input: {config: $config, description: $description, entityName: $entityName,
                      projectName: $projectName, priorRunsFilters: $priorRunsFilters}) {
    sweep { id name description runCount runCountExpected } } }"""


def finish_run(server, sweep, agent: str, exitcode: int = 0) -> dict:
    """The agent takes its next run, which ends with ``exitcode``."""
    command = heartbeat(server, agent, {})[0]
    upsert_run(server, sweep, command["run_id"])
    stream(server, sweep, command["run_id"], {"complete": True, "exitcode": exitcode})
    return command


def seeded(server, values: list, prior: list[str], **extra) -> dict:
    config = {**GRID, "parameters": {"x": {"values": values}}}
    filters = json.dumps({"$or": [{"name": name} for name in prior]})
    status, body = gql(
        server,
        CREATE_SEEDED,
        {"config": yaml.safe_dump(config), "entityName": server.entity, "projectName": "p",
         "priorRunsFilters": filters, **extra},
    )  # fmt: skip
    assert status == 200, body
    return body["data"]["upsertSweep"]["sweep"]


def test_a_sweep_seeded_with_prior_runs_never_hands_out_their_values(server):
    """wandb.sweep(prior_runs=...): the runs are the new sweep's, and its grid skips them."""
    old = server.create_sweep({**GRID, "parameters": {"x": {"values": [1, 2, 3, 4]}}}, project="p")
    agent = agent_on(server, old, "h1")
    done = [finish_run(server, old, agent) for _ in range(2)]
    failed = finish_run(server, old, agent, exitcode=1)
    created = seeded(server, [1, 2, 3, 4, 5, 6], [c["run_id"] for c in done], description="grown")
    assert (created["runCount"], created["runCountExpected"], created["description"]) == (2, 6, "grown")
    new = server.sweep(created["name"])
    taker = agent_on(server, new, "h2")
    handed = [finish_run(server, new, taker)["args"]["x"]["value"] for _ in range(4)]
    assert sorted(handed) == sorted([failed["args"]["x"]["value"], 4, 5, 6])
    assert heartbeat(server, taker, {}) == [{"type": "exit"}] and new.state == "FINISHED"


def test_prior_runs_filters_the_model_does_not_apply_are_refused(server):
    status, body = gql(
        server,
        CREATE_SEEDED,
        {"config": yaml.safe_dump(GRID), "projectName": "p", "priorRunsFilters": '{"state": "finished"}'},
    )
    assert status == 400 and "priorRunsFilters" in body["errors"][0]["message"]
    server.take_errors()


@pytest.mark.parametrize("reschedule", [True, False])
def test_a_run_deleted_while_the_grid_runs_is_not_handed_out_again_until_finish_and_resume(clock, reschedule):
    """W&B: delete crashed runs after the grid completed, then resume; deleted earlier, the
    value is not rescheduled (wandb/wandb#4713); the switch models "never" (wandb/wandb#2980)."""
    with StandIn(api_key=TEST_API_KEY, clock=clock, reschedule_deleted=reschedule) as server:
        sweep = server.create_sweep({**GRID, "parameters": {"x": {"values": [1, 2]}}}, project="p")
        agent = agent_on(server, sweep, "h1")
        failed = finish_run(server, sweep, agent, exitcode=1)
        server.delete_runs(sweep.id, [failed["run_id"]])  # while the grid runs
        clock.advance(1)
        second = finish_run(server, sweep, agent)
        assert second["args"] != failed["args"]
        assert heartbeat(server, agent, {}) == [{"type": "exit"}] and sweep.state == "FINISHED"
        server.set_state(sweep.id, "RUNNING")
        again = heartbeat(server, agent_on(server, sweep, "h2"))
        if reschedule:
            assert again[0]["args"] == failed["args"]
        else:
            assert again == [{"type": "exit"}]


# -- faults ----------------------------------------------------------------------------------
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


# -- the real CLI, agent and SDK ---------------------------------------------------------
def write_program(tmp_path, body: str) -> None:
    (tmp_path / "main.py").write_text(body)
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump({"program": "main.py", "method": "grid", "parameters": {"x": {"values": [1, 2]}}})
    )


def create_and_run(server, tmp_path, *agent_args: str) -> str:
    proc = wandb_cli(server, "sweep", "--project", "p", "sweep.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep_path = proc.stderr.split("wandb agent ")[1].split()[0]
    proc = wandb_cli(server, "agent", *agent_args, sweep_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return sweep_path


@pytest.mark.integration
def test_real_agent_runs_a_small_grid(server, tmp_path):
    write_program(
        tmp_path, "import wandb\nrun = wandb.init()\nrun.log({'loss': run.config.x})\nrun.finish()\n"
    )
    sweep_path = create_and_run(server, tmp_path)
    records = server.records(sweep_path)
    assert sorted(r["params"]["x"] for r in records) == [1, 2]
    assert {(r["state"], r["online"], r["exitcode"]) for r in records} == {("finished", True, 0)}


@pytest.mark.integration
def test_real_runs_that_fail_before_init_or_after_are_never_finished(server, clock, tmp_path):
    """(was forgiving) An ImportError before wandb.init() was recorded as finished."""
    write_program(
        tmp_path,
        "import sys\nimport wandb\nif '--x=1' in sys.argv:\n    import nosuchmodule\n"
        "run = wandb.init()\nrun.finish(exit_code=3)\nsys.exit(3)\n",
    )
    sweep_path = create_and_run(server, tmp_path, "--count", "2")
    states = {r["params"]["x"]: (r["state"], r["exitcode"]) for r in server.records(sweep_path)}
    # The first never reported (no wandb.init()): pending until W&B's stale timeout, then crashed.
    assert states == {1: ("pending", None), 2: ("failed", 3)}, states
    clock.advance(server.run_timeout + 1)
    states = {r["params"]["x"]: (r["state"], r["exitcode"]) for r in server.records(sweep_path)}
    assert states == {1: ("crashed", None), 2: ("failed", 3)}, states


@pytest.mark.integration
def test_wrong_interpreter_runs_crash(tmp_path):
    """A sweep whose command names a python without wandb: every run crashes, none finishes."""
    write_program(tmp_path, "import wandb\nrun = wandb.init()\nrun.finish()\n")
    config = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    config["command"] = [sys.base_prefix + "/bin/python3", "${program}", "${args}"]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    # An agent that leaves after --count runs never reports its last run's end: W&B
    # crashes it when no heartbeat comes (run_timeout, short here).
    with StandIn(api_key=TEST_API_KEY, run_timeout=2) as server:
        sweep_path = create_and_run(server, tmp_path, "--count", "2")
        server.wait_for(
            lambda s: {r["state"] for r in s.records(sweep_path)} == {"crashed"},
            timeout=30,
            what="all crashed",
        )


# -- the service's refusals (was forgiving) ----------------------------------------------------
SET_STATE = """mutation UpsertSweepState($id: ID, $state: String, $config: String) {
  upsertSweep(input: {id: $id, state: $state, config: $config}) { sweep { name state } } }"""
PROJECT_RUNS = """query Runs($project: String!, $entity: String, $filters: JSONString, $first: Int,
    $after: String) {
  project(name: $project, entityName: $entity) {
    runs(filters: $filters, first: $first, after: $after) {
      pageInfo { hasNextPage endCursor } edges { node { name sweepName } } } } }"""


def test_a_pending_sweep_cannot_be_paused(server):
    """wandb's client refuses it ("Cannot pause pending sweep."); so does the model."""
    sweep = server.create_sweep(GRID, project="p")
    sweep.state = "PENDING"
    status, body = gql(server, SET_STATE, {"id": sweep.node_id, "state": "PAUSED"})
    assert status == 400 and "pending: it cannot become paused" in body["errors"][0]["message"]
    assert gql(server, SET_STATE, {"id": sweep.node_id, "state": "RUNNING"})[0] == 200
    server.take_errors()


def test_an_update_by_id_checks_write_access_and_refuses_a_new_config(server):
    """A started sweep cannot be reconfigured (wandb/wandb#12415): a config sent with an
    update is refused, never silently dropped. Another entity's sweep cannot be changed."""
    sweep = server.create_sweep(GRID, project="p")
    changed = yaml.safe_dump({**GRID, "parameters": {"x": {"values": [1]}}})
    status, body = gql(server, SET_STATE, {"id": sweep.node_id, "config": changed})
    assert (
        status == 400 and "cannot reconfigure sweep which has already started" in body["errors"][0]["message"]
    )
    assert sweep.config == GRID
    foreign = server.create_sweep(GRID, entity="someone-else", project="p")
    status, body = gql(server, SET_STATE, {"id": foreign.node_id, "state": "PAUSED"})
    assert status == 403 and foreign.state == "RUNNING"
    server.take_errors()


def test_create_agent_takes_the_bare_sweep_name(server):
    sweep = server.create_sweep(GRID, project="p")
    status, body = gql(
        server,
        CREATE_AGENT,
        {"sweep": sweep.path, "host": "h1", "projectName": sweep.project, "entityName": sweep.entity},
    )
    assert status == 404 and "not found" in body["errors"][0]["message"]
    assert server.agents == {}
    server.take_errors()


def test_runs_filters_the_model_does_not_apply_are_refused(server):
    sweep = server.create_sweep(GRID, project="p")
    agent = agent_on(server, sweep, "h1")
    upsert_run(server, sweep, heartbeat(server, agent)[0]["run_id"])
    variables = {"project": "p", "entity": sweep.entity}
    status, body = gql(server, PROJECT_RUNS, {**variables, "filters": json.dumps({"sweep": sweep.id})})
    assert status == 200 and len(body["data"]["project"]["runs"]["edges"]) == 1
    status, body = gql(server, PROJECT_RUNS, {**variables, "filters": json.dumps({"state": "finished"})})
    assert status == 400 and "does not apply state" in body["errors"][0]["message"]
    server.take_errors()


def test_pages_are_capped_so_clients_must_page(server):
    sweep = server.create_sweep({**GRID, "method": "random"}, project="p")
    agent = agent_on(server, sweep, "h1")
    names = []
    for _ in range(25):
        run_id = heartbeat(server, agent, {})[0]["run_id"]
        upsert_run(server, sweep, run_id)
        stream(server, sweep, run_id, {"complete": True, "exitcode": 0})
        names.append(run_id)
    seen, after, pages = [], None, 0
    while True:
        body = gql(
            server, PROJECT_RUNS, {"project": "p", "entity": sweep.entity, "first": 500, "after": after}
        )[1]
        runs = body["data"]["project"]["runs"]
        seen += [edge["node"]["name"] for edge in runs["edges"]]
        pages += 1
        if not runs["pageInfo"]["hasNextPage"]:
            break
        after = runs["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(names) and pages == 3


def test_a_run_joins_a_sweep_only_when_the_sweep_handed_it_out(server):
    sweep = server.create_sweep(GRID, project="p")
    upsert_run(server, sweep, "selfmade")
    assert server.runs[(sweep.entity, sweep.project, "selfmade")].sweep is None
    agent = agent_on(server, sweep, "h1")
    run_id = heartbeat(server, agent)[0]["run_id"]
    upsert_run(server, sweep, run_id)
    assert server.runs[(sweep.entity, sweep.project, run_id)].sweep == sweep.id


def test_blackhole_fault_answers_nothing(server):
    server.inject("blackhole", operation="Viewer", count=1, seconds=3)
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        post(server.url, "/graphql", {"query": "query Viewer { viewer { id } }"}, timeout=1)
    assert time.monotonic() - started < 2.5, "the client's own timeout ended it"
    assert server.wait_for(lambda s: _viewer_ok(s), timeout=10, what="an answer after the black hole")


def test_http429_fault_says_when_to_ask_again(server):
    server.inject("http429", operation="Viewer", count=1, seconds=7)
    request = urllib.request.Request(
        server.url + "/graphql",
        data=json.dumps({"query": "query Viewer { viewer { id } }"}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(f"api:{TEST_API_KEY}".encode()).decode()},
    )
    with pytest.raises(urllib.error.HTTPError) as limited:
        urllib.request.urlopen(request, timeout=5)
    assert limited.value.code == 429
    assert (limited.value.headers["Retry-After"], limited.value.headers["RateLimit-Reset"]) == ("7", "7")
    assert gql(server, "query Viewer { viewer { id } }")[0] == 200
