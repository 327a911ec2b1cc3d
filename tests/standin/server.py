"""The W&B API stand-in: sweeps, agents, heartbeats and online runs, in memory.

What it serves (the operations wandb 0.31 sends, see ../shared/CONTEXT.md):

* ``POST /graphql``: Viewer, UpsertSweep (create, and state changes), SweepWithRuns and
  other sweep look-ups, CreateAgent, Heartbeat, UpsertBucket and the few run-side queries.
* ``POST /files/<entity>/<project>/<run>/file_stream``: run output, with ``preempting``
  and ``exitcode`` kept.
* ``/sdk/otel/...``: telemetry, accepted and dropped.
* ``/_standin/...``: a control API for tests that run the stand-in in another process:
  ``GET records``, ``GET sweeps``, ``POST faults``, ``POST sweeps/<id>/state``.

The search itself comes from the ``sweeps`` package, as on the real server. One lock
guards every state change, so two agents asking at once never get the same parameters.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import re
import socket
import string
import threading
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

with warnings.catch_warnings():
    # sweeps 0.2 declares pydantic v1 config keys; harmless under pydantic v2.
    warnings.simplefilter("ignore")
    import sweeps
    from sweeps.config.schema import validator as sweep_schema_validator

log = logging.getLogger("standin")

RUNNABLE = ("RUNNING", "PENDING")
STATES = ("PENDING", "RUNNING", "PAUSED", "FINISHED", "CANCELED")
OPERATION_RE = re.compile(r"^\s*(?:query|mutation)\s+(\w+)", re.MULTILINE)


class SweepConfigError(ValueError):
    """A sweep config the real server would refuse."""


def validate_sweep_config(config: Any) -> list[str]:
    """Schema violations, each naming the field it is about."""
    if not isinstance(config, dict):
        return ["sweep config must be a mapping (got " + type(config).__name__ + ")"]
    problems = []
    # Keys W&B accepts that the schema of the sweeps package (0.2) predates.
    newer = {"run_cap": lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0}
    for key, valid in newer.items():
        if key in config and not valid(config[key]):
            problems.append(f"{key}: {config[key]!r} is not valid")
    config = {k: v for k, v in config.items() if k not in newer}
    for error in sweep_schema_validator.iter_errors(config):
        where = ".".join(str(p) for p in error.absolute_path) or "config"
        problems.append(f"{where}: {error.message}")
    try:
        extra = sweeps.schema_violations_from_proposed_config(config)
    except ValueError as exc:
        extra = [str(exc)]
    for message in extra:
        if not any(message in p for p in problems):
            problems.append(message if ":" in message else f"parameters: {message}")
    if "program" not in config and "command" not in config:
        problems.append("program: a sweep needs 'program' or a 'command'")
    return problems


def new_id(length: int = 8) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))


@dataclass
class Assignment:
    """One run handed to one agent (a requeued run gets a second assignment)."""

    sweep: str
    run_id: str
    params: dict
    agent_id: str
    agent_host: str
    start: float
    end: float | None = None
    preempting: bool = False
    exitcode: int | None = None
    state: str = "running"
    online: bool = False
    last_seen: float = 0.0
    tags: list = field(default_factory=list)


@dataclass
class Agent:
    id: str
    sweep: str
    host: str
    created: float
    last_heartbeat: float | None = None
    heartbeats: int = 0
    running: set = field(default_factory=set)
    exited: bool = False


@dataclass
class Sweep:
    id: str
    entity: str
    project: str
    config: dict
    config_yaml: str
    state: str = "RUNNING"
    created: float = field(default_factory=time.time)
    requeue: deque = field(default_factory=deque)
    summaries: dict = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"


@dataclass
class Fault:
    kind: str  # "http500" | "delay" | "refuse"
    operation: str | None = None
    count: int | None = None
    until: float | None = None
    seconds: float = 0.0

    def matches(self, operation: str, now: float) -> bool:
        if self.until is not None and now > self.until:
            return False
        if self.count is not None and self.count <= 0:
            return False
        return self.operation is None or self.operation == operation


class GraphQLError(Exception):
    def __init__(self, message: str, status: int = 200, path: str | None = None):
        super().__init__(message)
        self.status = status
        self.path = path


class StandIn:
    """In-memory W&B backend. ``start()`` serves it over HTTP in a thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        entity: str = "fleet-tester",
        run_timeout: float = 120,
    ):
        self.bind = (host, port)
        # A run that nobody reports on (neither its agent's heartbeat nor its own file_stream)
        # for this long has crashed, as W&B decides from missing heartbeats.
        self.run_timeout = run_timeout
        self.api_key = api_key
        # Further keys the server takes (a user may have several, e.g. a local- key of a
        # self-hosted server next to a cloud one).
        self.other_keys: set[str] = set()
        self.entity = entity
        self.lock = threading.RLock()
        self.sweeps: dict[str, Sweep] = {}
        self.agents: dict[str, Agent] = {}
        self.assignments: list[Assignment] = []
        self.requests: list[tuple[float, str, str]] = []  # (time, path, operation)
        self.unknown_operations: list[str] = []
        self.faults: list[Fault] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._refusing = threading.Event()

    # -- serving -----------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.bind
        return f"http://{host}:{port}"

    def start(self) -> StandIn:
        self._listen()
        return self

    def _listen(self) -> None:
        handler = type("Handler", (_Handler,), {"standin": self})
        httpd = _Server(self.bind, handler)
        httpd.daemon_threads = True
        self.bind = (self.bind[0], httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="standin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------
    def inject(
        self,
        kind: str,
        operation: str | None = None,
        count: int | None = None,
        seconds: float = 0.0,
        duration: float | None = None,
    ) -> None:
        """Inject a fault.

        ``http500``: matching requests answer 500 (``count`` times, or for ``duration`` s).
        ``delay``: matching requests wait ``seconds`` before being answered.
        ``refuse``: the port stops listening for ``seconds``; connections are refused.
        """
        if kind not in ("http500", "delay", "refuse"):
            raise ValueError(f"unknown fault kind {kind!r}: use http500, delay or refuse")
        if kind == "refuse":
            self._refuse_for(seconds)
            return
        until = time.time() + duration if duration is not None else None
        with self.lock:
            self.faults.append(Fault(kind, operation, count, until, seconds))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _refuse_for(self, seconds: float) -> None:
        self.stop()
        self._refusing.set()

        def reopen() -> None:
            deadline = time.time() + 5
            while True:
                try:
                    self._listen()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.05)
            self._refusing.clear()

        timer = threading.Timer(seconds, reopen)
        timer.daemon = True
        timer.start()

    def _fault_for(self, operation: str) -> Fault | None:
        now = time.time()
        with self.lock:
            for fault in self.faults:
                if fault.matches(operation, now):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    # -- reading records (for tests) ---------------------------------------------
    def records(self, sweep: str | None = None) -> list[dict]:
        with self.lock:
            self._expire_runs(time.time())
            return [asdict(a) for a in self.assignments if sweep is None or self._match(a.sweep, sweep)]

    def sweep(self, sweep: str) -> Sweep:
        with self.lock:
            for s in self.sweeps.values():
                if self._match(s.path, sweep):
                    return s
        raise KeyError(sweep)

    @staticmethod
    def _match(path: str, ref: str) -> bool:
        return path == ref or path.rsplit("/", 1)[-1] == ref.rsplit("/", 1)[-1]

    def sweep_summary(self) -> list[dict]:
        with self.lock:
            return [
                {
                    "id": s.id,
                    "path": s.path,
                    "state": s.state,
                    "config": s.config,
                    "runs": sum(1 for a in self.assignments if a.sweep == s.path),
                    "agents": [
                        asdict(a) | {"running": sorted(a.running)}
                        for a in self.agents.values()
                        if a.sweep == s.path
                    ],
                }
                for s in self.sweeps.values()
            ]

    def wait_for(self, predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
        """Wait until ``predicate(self)`` is truthy; return its value or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"stand-in: {what} not reached within {timeout}s")
            time.sleep(interval)

    # -- sweep control (what the W&B UI would do) -------------------------------------
    def create_sweep(self, config: dict, entity: str | None = None, project: str | None = None) -> Sweep:
        problems = validate_sweep_config(config)
        if problems:
            raise SweepConfigError("; ".join(problems))
        with self.lock:
            sweep_id = new_id()
            while sweep_id in self.sweeps:
                sweep_id = new_id()
            sweep = Sweep(
                id=sweep_id,
                entity=entity or self.entity,
                project=project or config.get("project") or "uncategorized",
                config=config,
                config_yaml=yaml.safe_dump(config, sort_keys=False),
            )
            self.sweeps[sweep_id] = sweep
            return sweep

    def delete_runs(self, sweep: str, run_ids: list[str]) -> None:
        """Delete runs, as a user does in the W&B UI before re-running them."""
        with self.lock:
            path = self.sweep(sweep).path
            self.assignments = [a for a in self.assignments if not (a.sweep == path and a.run_id in run_ids)]

    def set_state(self, sweep: str, state: str) -> None:
        state = state.upper()
        if state not in STATES:
            raise ValueError(f"sweep state must be one of {', '.join(STATES)} (got {state!r})")
        with self.lock:
            self.sweep(sweep).state = state

    # -- GraphQL -----------------------------------------------------------------
    def graphql(self, operation: str, query: str, variables: dict) -> dict:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            if "project(" in query and "sweep(" in query:
                handler = self._op_SweepWithRuns
            else:
                with self.lock:
                    self.unknown_operations.append(operation)
                log.warning("stand-in: unsupported operation %s", operation)
                return {}
        return handler(variables, query)

    def _project(self, entity: str, project: str) -> dict:
        return {
            "id": f"project:{entity}/{project}",
            "name": project,
            "entity": {"id": f"entity:{entity}", "name": entity},
        }

    def _op_Viewer(self, variables: dict, query: str) -> dict:
        return {
            "viewer": {
                "id": "user:1",
                "entity": self.entity,
                "username": self.entity,
                "email": f"{self.entity}@example.invalid",
                "admin": False,
                "flags": "{}",
                "teams": {"edges": [{"node": {"name": self.entity}}]},
                "userInfo": "{}",
                "defaultFramework": None,
            }
        }

    def _op_ServerInfo(self, variables: dict, query: str) -> dict:
        return {"serverInfo": {"cliVersionInfo": "{}", "latestLocalVersionInfo": None, "features": []}}

    _op_ServerFeaturesQuery = _op_ServerInfo

    def _op_UpsertSweep(self, variables: dict, query: str) -> dict:
        sweep_ref = variables.get("id")
        if sweep_ref:
            state = variables.get("state")
            with self.lock:
                sweep = self._find_sweep(sweep_ref)
                if state:
                    self.set_state(sweep.path, state)
            return self._upsert_answer(sweep)
        try:
            config = yaml.safe_load(variables.get("config") or "")
        except yaml.YAMLError as exc:
            raise GraphQLError(f"Invalid sweep config: not YAML: {exc}", 400, "upsertSweep") from exc
        try:
            sweep = self.create_sweep(
                config, entity=variables.get("entityName"), project=variables.get("projectName")
            )
        except SweepConfigError as exc:
            raise GraphQLError(f"Invalid sweep config: {exc}", 400, "upsertSweep") from exc
        if variables.get("state"):
            self.set_state(sweep.path, variables["state"])
        log.info("stand-in: created sweep %s", sweep.path)
        return self._upsert_answer(sweep)

    def _upsert_answer(self, sweep: Sweep) -> dict:
        project = self._project(sweep.entity, sweep.project)
        return {
            "upsertSweep": {
                "sweep": {"name": sweep.id, "id": sweep.id, "project": project},
                "configValidationWarnings": [],
            }
        }

    def _find_sweep(self, ref: str) -> Sweep:
        ref = ref.rsplit("/", 1)[-1]
        sweep = self.sweeps.get(ref)
        if sweep is None:
            raise GraphQLError(f"Sweep {ref} not found", 404)
        return sweep

    def _op_SweepWithRuns(self, variables: dict, query: str) -> dict:
        ref = variables.get("sweep") or variables.get("name") or variables.get("sweepName")
        with self.lock:
            sweep = self.sweeps.get(str(ref).rsplit("/", 1)[-1])
            if sweep is None:
                return {"project": None}
            runs = []
            for a in self._latest_assignments(sweep):
                runs.append(
                    {
                        "name": a.run_id,
                        "state": a.state,
                        "config": json.dumps({k: {"value": v} for k, v in a.params.items()}),
                        "exitcode": a.exitcode,
                        "heartbeatAt": None,
                        "shouldStop": False,
                        "failed": a.state == "failed",
                        "stopped": False,
                        "running": a.end is None,
                        "summaryMetrics": json.dumps(sweep.summaries.get(a.run_id, {})),
                        "sampledHistory": [[]],
                    }
                )
            node = {
                "id": sweep.id,
                "name": sweep.id,
                "displayName": sweep.config.get("name"),
                "method": sweep.config.get("method"),
                "state": sweep.state,
                "description": sweep.config.get("description"),
                "config": sweep.config_yaml,
                "createdAt": _iso(sweep.created),
                "heartbeatAt": None,
                "updatedAt": None,
                "earlyStopJobRunning": False,
                "bestLoss": None,
                "controller": None,
                "scheduler": None,
                "runCount": len(runs),
                "runCountExpected": None,
                "runs": {"edges": [{"node": r} for r in runs]},
            }
            return {"project": self._project(sweep.entity, sweep.project) | {"sweep": node}}

    def _op_GetSweeps(self, variables: dict, query: str) -> dict:
        entity = variables.get("entity") or self.entity
        project = variables.get("project")
        with self.lock:
            nodes = [
                {
                    "id": sw.id,
                    "name": sw.id,
                    "displayName": sw.config.get("name"),
                    "state": sw.state,
                    "config": sw.config_yaml,
                    "method": sw.config.get("method"),
                    "runCount": len(self._latest_assignments(sw)),
                    "createdAt": _iso(sw.created),
                }
                for sw in self.sweeps.values()
                if sw.entity == entity and sw.project == project
            ]
        return {
            "project": self._project(entity, project)
            | {
                "totalSweeps": len(nodes),
                "sweeps": {
                    "pageInfo": {"endCursor": None, "hasNextPage": False},
                    "edges": [{"node": n} for n in nodes],
                },
            }
        }

    def _op_CreateAgent(self, variables: dict, query: str) -> dict:
        with self.lock:
            sweep = self._find_sweep(variables["sweep"])
            if sweep.state not in (*RUNNABLE, "PAUSED"):
                raise GraphQLError(f"Sweep {sweep.path} is not running", 400, "createAgent")
            agent = Agent(
                id=new_id(12), sweep=sweep.path, host=variables.get("host") or "?", created=time.time()
            )
            self.agents[agent.id] = agent
            log.info("stand-in: agent %s on %s joined %s", agent.id, agent.host, sweep.path)
            return {"createAgent": {"agent": {"id": agent.id}}}

    def _op_Heartbeat(self, variables: dict, query: str) -> dict:
        run_state = json.loads(variables.get("runState") or "{}")
        now = time.time()
        with self.lock:
            agent = self.agents.get(variables.get("id"))
            if agent is None:
                raise GraphQLError("agent not found", 404)
            sweep = self._find_sweep(agent.sweep)
            agent.last_heartbeat = now
            agent.heartbeats += 1
            alive = {run_id for run_id, running in run_state.items() if running}
            for a in self.assignments:
                if a.agent_id == agent.id and a.run_id in alive and a.end is None:
                    a.last_seen = now
            for run_id in agent.running - alive:
                self._end_run(sweep, agent, run_id, now)
            # Runs still alive that this agent was given (a run is only in agent.running once assigned).
            agent.running = {r for r in alive if self._assigned(agent, r)}
            self._expire_runs(now)
            commands = self._commands_for(sweep, agent, now)
            if any(c["type"] == "exit" for c in commands):
                agent.exited = True
            return {"agentHeartbeat": {"agent": {"id": agent.id}, "commands": json.dumps(commands)}}

    def _assigned(self, agent: Agent, run_id: str) -> bool:
        return any(a.agent_id == agent.id and a.run_id == run_id for a in self.assignments)

    def _end_run(self, sweep: Sweep, agent: Agent, run_id: str, now: float) -> None:
        for a in reversed(self.assignments):
            if a.agent_id == agent.id and a.run_id == run_id and a.end is None:
                self._close(sweep, a, now)
                break

    def _close(self, sweep: Sweep, a: Assignment, now: float, crashed: bool = False) -> None:
        """End a run: by its final record, or as its agent saw it vanish, or as silent (crashed)."""
        a.end = now
        if a.preempting and a.exitcode != 0:
            # mark_preempting() and then a non-zero exit (or no final record): W&B requeues it.
            a.state = "preempted"
            sweep.requeue.append(a)
        elif a.exitcode is not None:
            a.state = "finished" if a.exitcode == 0 else "failed"
        elif crashed or a.online:
            a.state = "crashed"  # killed runs send no final record
        else:
            a.state = "finished"  # offline runs report nothing

    def _expire_runs(self, now: float) -> None:
        for a in self.assignments:
            if a.end is None and now - max(a.last_seen, a.start) > self.run_timeout:
                self._close(self._find_sweep(a.sweep), a, now, crashed=True)

    def _commands_for(self, sweep: Sweep, agent: Agent, now: float) -> list[dict]:
        if sweep.state == "CANCELED":
            if agent.running:
                return [{"type": "stop", "run_id": r} for r in sorted(agent.running)]
            return [{"type": "exit"}]
        if sweep.state == "FINISHED":
            return [] if agent.running else [{"type": "exit"}]
        if sweep.state == "PAUSED" or agent.running:
            return []
        nxt = self._next_assignment(sweep, agent, now)
        if nxt is None:
            busy = any(a.end is None for a in self.assignments if a.sweep == sweep.path)
            if not busy and not sweep.requeue:
                sweep.state = "FINISHED"
                log.info("stand-in: sweep %s finished", sweep.path)
                return [{"type": "exit"}]
            return []
        agent.running.add(nxt.run_id)
        program = sweep.config.get("program")
        return [
            {
                "type": "run",
                "run_id": nxt.run_id,
                "program": program,
                "args": {k: {"value": v} for k, v in nxt.params.items()},
            }
        ]

    def _latest_assignments(self, sweep: Sweep) -> list[Assignment]:
        latest: dict[str, Assignment] = {}
        for a in self.assignments:
            if a.sweep == sweep.path:
                latest[a.run_id] = a
        return list(latest.values())

    def _next_assignment(self, sweep: Sweep, agent: Agent, now: float) -> Assignment | None:
        # A preempted run goes to an agent on another host first: its own host is
        # most likely going down. Failing that, new work comes first.
        old = next((a for a in sweep.requeue if a.agent_host != agent.host), None)
        suggestion = None if old else self._suggest(sweep)
        if old is None and suggestion is None and sweep.requeue:
            old = sweep.requeue[0]
        if old is not None:
            sweep.requeue.remove(old)
            run_id, params = old.run_id, old.params
        elif suggestion is None:
            return None
        else:
            run_id = new_id()
            params = {k: v["value"] for k, v in suggestion.config.items()}
        assignment = Assignment(
            sweep=sweep.path,
            run_id=run_id,
            params=params,
            agent_id=agent.id,
            agent_host=agent.host,
            start=now,
        )
        self.assignments.append(assignment)
        return assignment

    def _suggest(self, sweep: Sweep):
        runs = []
        for a in self._latest_assignments(sweep):
            state = a.state if a.state in sweeps.RunState.__members__ else "running"
            runs.append(
                sweeps.SweepRun(
                    name=a.run_id,
                    state=state,
                    config={k: {"value": v} for k, v in a.params.items()},
                    summaryMetrics=sweep.summaries.get(a.run_id, {}),
                )
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sweeps.next_run(sweep.config, runs)

    # Run side (the child processes of the agent, when online).
    def _op_UpsertBucket(self, variables: dict, query: str) -> dict:
        name = variables.get("name") or new_id()
        entity = variables.get("entity") or self.entity
        project = variables.get("project") or "uncategorized"
        with self.lock:
            for a in reversed(self.assignments):
                if a.run_id == name:
                    a.online = True
                    a.tags = sorted(set(a.tags) | set(variables.get("tags") or []))
                    break
        return {
            "upsertBucket": {
                "inserted": True,
                "bucket": {
                    "id": f"run:{entity}/{project}/{name}",
                    "name": name,
                    "displayName": variables.get("displayName") or name,
                    "description": None,
                    "config": variables.get("config") or "{}",
                    "sweepName": variables.get("sweep"),
                    "historyLineCount": 0,
                    "eventsLineCount": 0,
                    "summaryMetrics": "{}",
                    "tags": [],
                    "notes": None,
                    "group": None,
                    "jobType": None,
                    "createdAt": _iso(time.time()),
                    "historyTail": "[]",
                    "eventsTail": "[]",
                    "project": self._project(entity, project),
                },
            }
        }

    def _op_CreateRunFiles(self, variables: dict, query: str) -> dict:
        entity, project, run = variables["entity"], variables["project"], variables["run"]
        return {
            "createRunFiles": {
                "runID": f"run:{entity}/{project}/{run}",
                "uploadHeaders": [],
                "files": [
                    {"name": f, "uploadUrl": f"{self.url}/_upload/{entity}/{project}/{run}/{f}"}
                    for f in variables.get("files") or []
                ],
            }
        }

    def _op_OrganizationCoreWeaveOrganizationID(self, variables: dict, query: str) -> dict:
        return {"entity": {"organization": None}}

    def _op_RunResumeStatus(self, variables: dict, query: str) -> dict:
        return {
            "model": {
                "id": "project:x",
                "name": variables.get("project"),
                "entity": {"id": "entity:x", "name": variables.get("entity")},
                "bucket": None,
            }
        }

    def file_stream(self, entity: str, project: str, run_id: str, body: dict) -> dict:
        now = time.time()
        with self.lock:
            for a in reversed(self.assignments):
                if a.run_id == run_id:
                    a.online = True
                    a.last_seen = now
                    if body.get("preempting"):
                        a.preempting = True
                    summary = body.get("files", {}).get("wandb-summary.json", {}).get("content")
                    sweep = self.sweeps.get(a.sweep.rsplit("/", 1)[-1])
                    if summary and sweep:
                        with contextlib.suppress(ValueError):
                            sweep.summaries[run_id] = json.loads(summary[-1])
                    if body.get("complete") and body.get("exitcode") is not None:
                        a.exitcode = int(body["exitcode"])
                        # The run's own final record ends it, even when its agent is no longer
                        # heartbeating (a draining or stopping agent).
                        if a.end is None and sweep:
                            self._close(sweep, a, now)
                    break
        return {"exitcode": None, "limits": {}}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a fleet's agents may all connect at the same instant

    def server_bind(self) -> None:
        # IP_FREEBIND: the address may be a podman network's gateway whose bridge comes up
        # only with the network's first container.
        self.socket.setsockopt(socket.SOL_IP, getattr(socket, "IP_FREEBIND", 15), 1)
        super().server_bind()

    def handle_error(self, request, client_address) -> None:
        # Clients drop keep-alive connections at exit; that is not an error.
        log.debug("stand-in: connection from %s ended abruptly", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        key = self.standin.api_key
        if key is None:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                _user, _, given = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return given == key or given in self.standin.other_keys
        return False

    def _fault(self, operation: str) -> bool:
        fault = self.standin._fault_for(operation)
        if fault is None:
            return False
        if fault.kind == "delay":
            time.sleep(fault.seconds)
            return False
        self._send(500, {"errors": [{"message": "stand-in: injected fault"}]})
        return True

    def do_GET(self) -> None:
        s = self.standin
        if self.path == "/_standin/records":
            self._send(200, s.records())
        elif self.path == "/_standin/sweeps":
            self._send(200, s.sweep_summary())
        elif self.path in ("/healthz", "/_standin/health"):
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": f"no such path {self.path}"})

    def do_PUT(self) -> None:
        self._body()
        self._send(200, {})

    def do_POST(self) -> None:
        s = self.standin
        raw = self._body()
        path = self.path.split("?", 1)[0]
        if path.startswith("/_standin/"):
            self._control(path, raw)
            return
        if path.startswith("/sdk/otel/"):
            self._send(200, {})
            return
        if not self._authorized():
            self._send(401, {"errors": [{"message": "Invalid API key: the key was not accepted"}]})
            return
        if path == "/graphql":
            try:
                payload = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {"errors": [{"message": "request body is not JSON"}]})
                return
            query = payload.get("query") or ""
            match = OPERATION_RE.search(query)
            operation = payload.get("operationName") or (match.group(1) if match else "anonymous")
            with s.lock:
                s.requests.append((time.time(), path, operation))
            if self._fault(operation):
                return
            try:
                data = s.graphql(operation, query, payload.get("variables") or {})
            except GraphQLError as exc:
                error = {"message": str(exc)}
                if exc.path:
                    error["path"] = [exc.path]
                self._send(exc.status, {"errors": [error], "data": None})
                return
            self._send(200, {"data": data})
            return
        match = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", path)
        if match:
            with s.lock:
                s.requests.append((time.time(), path, "file_stream"))
            if self._fault("file_stream"):
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            self._send(200, s.file_stream(*match.groups(), body))
            return
        self._send(404, {"errors": [{"message": f"stand-in: no such path {path}"}]})

    def _control(self, path: str, raw: bytes) -> None:
        s = self.standin
        try:
            body = json.loads(raw or b"{}")
            if path == "/_standin/faults":
                s.inject(**body)
            elif path == "/_standin/faults/clear":
                s.clear_faults()
            elif m := re.fullmatch(r"/_standin/sweeps/([^/]+)/state", path):
                s.set_state(m.group(1), body["state"])
            else:
                self._send(404, {"error": f"no such control path {path}"})
                return
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, {"ok": True})


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
