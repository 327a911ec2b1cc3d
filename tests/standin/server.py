"""The W&B API stand-in: a model of the service the wandb CLI, agent and SDK talk to.

What it serves (the operations wandb 0.31 sends, see ../shared/CONTEXT.md):

* ``POST /graphql``: a real GraphQL executor (graphql-core) over ``schema.graphql``, the
  part of W&B's schema that wandb and sweep-fleet use. A query that asks for a field or
  an argument the service does not have is refused (HTTP 400), as W&B refuses it; so is
  one the model cannot answer. Every refusal is kept in ``errors`` for the tests to check.
* ``POST /files/<entity>/<project>/<run>/file_stream``: run output; the final record
  (``complete`` with ``exitcode``) decides how a run ended, and ``preempting`` is kept.
* ``/sdk/otel/...``: telemetry, accepted and dropped.
* ``/_standin/...``: a control API for tests that run the stand-in in another process.

The model: sweeps, runs and agents belong to an entity and a project, and are found only
there; the API key belongs to one user (the viewer) and the entities it may write to. A
sweep is searched with the ``sweeps`` package, as on the real server, under one lock, so
two agents asking at once never get the same parameters. Each run handed to an agent is
an attempt (``records()``); a requeued run gets a second attempt with the same run id.

A run's states, as W&B records them (https://docs.wandb.ai/models/runs/run-states):

* ``pending``: handed to an agent, not started yet (no ``wandb.init()`` has reported it);
* ``running``: its own process reports on it (``UpsertBucket``, then ``file_stream``);
* its final record with exit code 0: ``finished``; another exit code: ``failed``, or
  ``preempted`` when it called ``mark_preempting()`` first (then it is requeued);
* nobody reports on it for W&B's stale timeout, about five minutes (``run_timeout``,
  STALE_SECONDS; "Unresponsive runs and server-side timeout",
  https://docs.wandb.ai/models/sweeps/signal-handling-sweep-runs): ``crashed``, pending
  runs too; a preempting run that goes silent without a final record is ``preempted``
  then, and requeued ("Resume preemptible Sweeps runs",
  https://docs.wandb.ai/models/runs/resuming#resume-preemptible-sweeps-runs);
* its sweep cancelled: ``killed`` at once; the agents are told to exit, which kills the
  runs (SIGKILL, no handler runs: https://docs.wandb.ai/models/sweeps/pause-resume-and-cancel-sweeps).

The clock is ``StandIn.clock`` (time.time), so that unit tests can move it on instead of
waiting five minutes. Where the model is a choice of ours rather than W&B's documented
behaviour, a comment says so ("Our choice").
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
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
from pathlib import Path
from typing import Any, ClassVar

import graphql
import yaml

with warnings.catch_warnings():
    # sweeps 0.2 declares pydantic v1 config keys; harmless under pydantic v2.
    warnings.simplefilter("ignore")
    import sweeps
    from sweeps import grid_search

log = logging.getLogger("standin")

STATES = ("PENDING", "RUNNING", "PAUSED", "FINISHED", "CANCELED")
# Which state a sweep may go to from which. The wandb CLI checks pause and stop/cancel
# on its own side; the server refuses the rest. Our choice where W&B does not document
# it: a CANCELED sweep stays cancelled; a FINISHED one may only be resumed (the users'
# re-run: delete runs, resume).
TRANSITIONS = {
    # A pending sweep cannot be paused: wandb's client refuses it ("Cannot pause pending
    # sweep.", wandb/cli/cli.py), and so does the model.
    "PENDING": {"RUNNING", "FINISHED", "CANCELED"},
    "RUNNING": {"PAUSED", "FINISHED", "CANCELED"},
    "PAUSED": {"RUNNING", "FINISHED", "CANCELED"},
    "FINISHED": {"RUNNING"},
    "CANCELED": set(),
}
# W&B marks a run that stops reporting crashed after "about five minutes" (the signal
# handling page above). Tests may shorten it per stand-in (run_timeout); a test of its own
# keeps this default at W&B's value.
STALE_SECONDS = 300.0
# The most items W&B hands out per page of a connection (first:). Our choice: small, so
# that every client's paging is exercised by the tests' sweeps.
PAGE_LIMIT = 10
SCHEMA_FILE = Path(__file__).with_name("schema.graphql")
FAULT_KINDS = ("http500", "http500_after", "delay", "refuse", "redirect", "blackhole", "http429")


class SweepConfigError(ValueError):
    """A sweep config W&B refuses outright (not YAML, not a mapping)."""


class ServiceError(Exception):
    """A refusal of the service, with the HTTP status W&B answers it with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- the schema --------------------------------------------------------------------------
def _without_newer(document: graphql.DocumentNode) -> graphql.DocumentNode:
    """The schema document with everything marked @newer left out (an older server)."""

    class Strip(graphql.Visitor):
        def _drop(self, node, *_args):
            if any(d.name.value == "newer" for d in node.directives or ()):
                return graphql.REMOVE
            return None

        enter_field_definition = _drop
        enter_input_value_definition = _drop

    return graphql.visit(document, Strip())


@functools.lru_cache(maxsize=2)
def schema(version: str = "current") -> graphql.GraphQLSchema:
    document = graphql.parse(SCHEMA_FILE.read_text())
    if version == "old":
        document = _without_newer(document)
    built = graphql.build_ast_schema(document)
    for name in ("JSONString", "JSON", "DateTime"):
        scalar = built.type_map[name]
        scalar.serialize = lambda value: value  # type: ignore[method-assign]
        scalar.parse_value = lambda value: value  # type: ignore[method-assign]
    return built


@functools.lru_cache(maxsize=512)
def _validated(version: str, query: str) -> tuple[graphql.DocumentNode | None, tuple[str, ...]]:
    """The parsed query and what the schema refuses in it (empty: it may be executed)."""
    try:
        document = graphql.parse(query)
    except graphql.GraphQLError as err:
        return None, (err.message,)
    return document, tuple(e.message for e in graphql.validate(schema(version), document))


def sweep_config_warnings(config: Any) -> list[str]:
    """What W&B's schema says is wrong with a config: returned as warnings, not refused."""
    try:
        return list(sweeps.schema_violations_from_proposed_config(config))
    except ValueError as exc:
        return [str(exc)]


def new_id(length: int = 8) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))


def unseen_number(run_id: str) -> int:
    """A stable number for a run known only from its assignment (above any counted run)."""
    return 10**9 + int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)


def _node_id(kind: str, number: int) -> str:
    """A GraphQL node id as W&B gives them: opaque, not the object's name."""
    return base64.b64encode(f"{kind}:{number}".encode()).decode()


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) if ts else None


# -- the model ---------------------------------------------------------------------------
@dataclass
class Assignment:
    """One attempt: a run handed to one agent (a requeued run gets a second one)."""

    sweep: str
    run_id: str
    params: dict
    agent_id: str
    agent_host: str
    start: float
    end: float | None = None
    preempting: bool = False
    exitcode: int | None = None
    state: str = "pending"
    online: bool = False
    last_seen: float = 0.0
    tags: list = field(default_factory=list)
    stopped_by_server: bool = False
    vanished: float | None = None
    # Deleted by a user (delete_runs, deleteRun): gone from W&B, kept here for the tests.
    deleted: bool = False
    deleted_at: float | None = None


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
    id: str  # the sweep's name, what `wandb agent ENTITY/PROJECT/ID` takes
    entity: str
    project: str
    config: dict
    config_yaml: str
    number: int = 0
    state: str = "RUNNING"
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    requeue: deque = field(default_factory=deque)
    summaries: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    expected: int | None = None
    description: str | None = None
    # The runs added at creation (priorRunsFilters), by name: they are this sweep's runs too.
    prior: list = field(default_factory=list)
    # When the sweep was last resumed after it had finished (FINISHED -> RUNNING).
    resumed_after_finish: float | None = None

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def node_id(self) -> str:
        return _node_id("Sweep", self.number)


@dataclass
class Run:
    """W&B's record of one run id, across its attempts (what UpsertBucket writes)."""

    name: str
    entity: str
    project: str
    number: int
    sweep: str | None = None
    config: str = "{}"
    tags: list = field(default_factory=list)
    created: float = field(default_factory=time.time)
    history_lines: int = 0

    @property
    def node_id(self) -> str:
        return _node_id("Run", self.number)


@dataclass
class Fault:
    kind: str  # "http500" | "http500_after" | "delay" | "refuse" | "redirect" | "blackhole" | "http429"
    operation: str | None = None
    count: int | None = None
    until: float | None = None
    seconds: float = 0.0
    location: str = ""

    def matches(self, operation: str, now: float) -> bool:
        if self.until is not None and now > self.until:
            return False
        if self.count is not None and self.count <= 0:
            return False
        return self.operation is None or self.operation == operation


class StandIn:
    """In-memory W&B backend. ``start()`` serves it over HTTP in a thread."""

    # Every stand-in made and not yet checked after it stopped: the tests' fixture checks
    # each for refusals after every test (held strongly: one made and dropped inside a test
    # is checked all the same).
    made: ClassVar[list[StandIn]] = []

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        entity: str = "fleet-tester",
        run_timeout: float = STALE_SECONDS,
        version: str = "current",
        clock=time.time,
        reschedule_deleted: bool = True,
    ):
        self.bind = (host, port)
        # A run that nobody reports on for this long has crashed (W&B's stale timeout).
        self.run_timeout = run_timeout
        self.clock = clock
        # W&B documents re-running a grid's crashed values only after the grid completed:
        # delete the runs, then resume ("How do I rerun a grid search?",
        # https://docs.wandb.ai/support/models/articles/how-do-i-rerun-a-grid-search). A run
        # deleted before that is not handed out again (wandb/wandb#4713: "you cleared the
        # sweep queue of that config"; wandb/wandb#2980); here it is handed out again only
        # after the sweep has finished and been resumed since the deletion. False: never,
        # what users report of deleted runs (wandb/wandb#2980).
        self.reschedule_deleted = reschedule_deleted
        self.api_key = api_key
        # Further keys the server takes (a user may have several, e.g. a local- key of a
        # self-hosted server next to a cloud one).
        self.other_keys: set[str] = set()
        self.entity = entity
        # The entities the key may write to: the user's own and its team's.
        self.teams = [entity, f"{entity}-team"]
        self.version = version
        self.schema = schema(version)
        self.lock = threading.RLock()
        self.sweeps: dict[str, Sweep] = {}  # by name (unique here; found only in its project)
        self.runs: dict[tuple[str, str, str], Run] = {}  # by (entity, project, name)
        self.projects: set[tuple[str, str]] = set()
        self.agents: dict[str, Agent] = {}
        self.assignments: list[Assignment] = []
        self.requests: list[tuple[float, str, str]] = []  # (time, path, operation)
        # Refused requests: tests that expect some take them with take_errors(); the test
        # fixture fails a test during which a query outside the schema or an internal error
        # happened (a refusal of the service itself, such as "Sweep is not running", is
        # what W&B answers and part of the model).
        self.errors: list[dict] = []
        self.faults: list[Fault] = []
        self._numbers = iter(range(1, 1_000_000))
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._refusing = threading.Event()
        self.closed = False
        StandIn.made.append(self)

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
        # A short poll: stop() waits for it, and tests start and stop many stand-ins.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="standin", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._close_listener()
        self.closed = True

    def _close_listener(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def take_errors(self) -> list[dict]:
        """The refusals so far (and forget them): for tests that cause them on purpose."""
        with self.lock:
            taken, self.errors = self.errors, []
        return taken

    # -- faults ------------------------------------------------------------------
    def inject(
        self,
        kind: str,
        operation: str | None = None,
        count: int | None = None,
        seconds: float = 0.0,
        duration: float | None = None,
        location: str = "",
    ) -> None:
        """Inject a fault.

        ``http500``: matching requests answer 500 (``count`` times, or for ``duration`` s).
        ``http500_after``: matching requests are carried out, then answered 500 (the
        answer is lost: the client cannot know that its write happened).
        ``delay``: matching requests wait ``seconds`` before being answered.
        ``refuse``: the port stops listening for ``seconds``; connections are refused.
        ``redirect``: matching requests are answered 302 with ``location`` (W&B's API never
        redirects; a hostile server or proxy may, to collect the key a client sends on:
        urllib follows a 301/302/303 after a POST with a GET, Authorization header included).
        ``blackhole``: matching requests get no answer: the connection is held for
        ``seconds``, then dropped (a network that loses packets; the client's timeout ends it).
        ``http429``: matching requests are answered 429 with ``Retry-After: seconds`` (W&B's
        rate limit, https://docs.wandb.ai/guides/track/limits/#rate-limits).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}: use {', '.join(FAULT_KINDS)}")
        if kind == "refuse":
            self._refuse_for(seconds)
            return
        until = self.clock() + duration if duration is not None else None
        with self.lock:
            self.faults.append(Fault(kind, operation, count, until, seconds, location))

    @property
    def refusing(self) -> bool:
        """A ``refuse`` fault is on: the port does not listen."""
        return self._refusing.is_set()

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _refuse_for(self, seconds: float) -> None:
        self._close_listener()
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

    def _fault_for(self, operation: str, after: bool = False) -> Fault | None:
        now = self.clock()
        with self.lock:
            for fault in self.faults:
                if (fault.kind == "http500_after") == after and fault.matches(operation, now):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    # -- reading records (for tests) ---------------------------------------------
    def records(self, sweep: str | None = None) -> list[dict]:
        with self.lock:
            self._settle(self.clock())
            return [
                {k: v for k, v in asdict(a).items() if k not in ("stopped_by_server", "vanished")}
                for a in self.assignments
                if sweep is None or self._match(a.sweep, sweep)
            ]

    def sweep(self, sweep: str) -> Sweep:
        with self.lock:
            for s in self.sweeps.values():
                if self._match(s.path, sweep):
                    return s
        raise KeyError(sweep)

    @staticmethod
    def _match(path: str, ref: str) -> bool:
        """A test's reference to a sweep: its path, or its name alone."""
        return path == ref or ("/" not in ref and path.rsplit("/", 1)[-1] == ref)

    def sweep_summary(self) -> list[dict]:
        with self.lock:
            return [
                {
                    "id": s.id,
                    "path": s.path,
                    "state": s.state,
                    "config": s.config,
                    "warnings": s.warnings,
                    "runs": sum(1 for a in self.assignments if a.sweep == s.path and not a.deleted),
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

    # -- what a user does in the W&B UI (for tests) --------------------------------------
    def create_sweep(self, config: dict, entity: str | None = None, project: str | None = None) -> Sweep:
        if not isinstance(config, dict):
            raise SweepConfigError(f"the sweep config must be a mapping (got {type(config).__name__})")
        entity = entity or self.entity
        project = project or config.get("project") or "uncategorized"
        with self.lock:
            sweep_id = new_id()
            while sweep_id in self.sweeps:
                sweep_id = new_id()
            sweep = Sweep(
                id=sweep_id,
                entity=entity,
                project=project,
                config=config,
                config_yaml=yaml.safe_dump(config, sort_keys=False),
                number=next(self._numbers),
                warnings=sweep_config_warnings(config),
                expected=self._expected(config),
            )
            self.sweeps[sweep_id] = sweep
            self.projects.add((entity, project))
            return sweep

    @staticmethod
    def _expected(config: dict) -> int | None:
        """How many runs the sweep will have: the grid's size (or run_cap), as W&B shows it."""
        cap = config.get("run_cap")
        cap = cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None
        if config.get("method") != "grid":
            return cap
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                size = sum(1 for r in grid_search.grid_search_next_runs([], config, n=100_000) if r)
        except Exception:  # a grid the search cannot walk: W&B shows no count
            return cap
        return min(size, cap) if cap else size

    def delete_runs(self, sweep: str, run_ids: list[str]) -> None:
        """Delete runs, as a user does in the W&B UI before re-running them."""
        with self.lock:
            found = self.sweep(sweep)
            for run_id in run_ids:
                self._delete_run(found, run_id)

    def _delete_run(self, sweep: Sweep, run_id: str) -> None:
        """W&B forgets the run; the tests still see its attempts, flagged ``deleted``."""
        for a in self.assignments:
            if a.sweep == sweep.path and a.run_id == run_id and not a.deleted:
                a.deleted = True
                a.deleted_at = self.clock()
        self.runs.pop((sweep.entity, sweep.project, run_id), None)
        sweep.requeue = deque(a for a in sweep.requeue if a.run_id != run_id)

    def set_state(self, sweep: str, state: str) -> None:
        """Change a sweep's state as the W&B UI does (the same rules as the API)."""
        with self.lock:
            self._change_state(self.sweep(sweep), state.upper())

    def _change_state(self, sweep: Sweep, state: str) -> None:
        if state not in STATES:
            raise ServiceError(f"sweep state must be one of {', '.join(STATES)} (got {state!r})")
        if state == sweep.state:
            return
        if state not in TRANSITIONS[sweep.state]:
            raise ServiceError(
                f"Sweep {sweep.path} is {sweep.state.lower()}: it cannot become {state.lower()}", 400
            )
        if sweep.state == "FINISHED" and state == "RUNNING":
            sweep.resumed_after_finish = self.clock()
        sweep.state = state
        sweep.updated = self.clock()
        if state == "CANCELED":
            # W&B kills a cancelled sweep's runs at once: they are killed, whatever they do next.
            now = self.clock()
            for a in self.assignments:
                if a.sweep == sweep.path and a.end is None and a.state in ("pending", "running"):
                    a.stopped_by_server = True
                    self._close(a, now)

    # -- GraphQL -----------------------------------------------------------------
    def execute(self, query: str, variables: dict, operation: str | None) -> tuple[int, dict]:
        """Answer one GraphQL request: (HTTP status, body)."""
        document, problems = _validated(self.version, query)
        if problems:
            return self._refuse(operation, problems, 400, "schema")
        with self.lock:
            result = graphql.execute(
                self.schema,
                document,
                root_value=_Root(self),
                variable_values=variables,
                operation_name=operation if operation and operation != "anonymous" else None,
            )
        if not result.errors:
            return 200, {"data": result.data}
        service = all(isinstance(e.original_error, ServiceError) for e in result.errors)
        status = max(getattr(e.original_error, "status", 500) for e in result.errors)
        errors = [{"message": e.message, "path": list(e.path or [])} for e in result.errors]
        self._record_error(
            operation, [e["message"] for e in errors], status, "service" if service else "internal"
        )
        return status, {"errors": errors, "data": result.data}

    def _refuse(self, operation: str | None, problems, status: int, kind: str) -> tuple[int, dict]:
        self._record_error(operation, list(problems), status, kind)
        return status, {"errors": [{"message": p} for p in problems]}

    def _record_error(self, operation: str | None, messages: list[str], status: int, kind: str) -> None:
        """kind: schema (a query W&B does not answer), service (a refusal of the model, as W&B
        refuses: not found, not running, a forbidden change), internal (the stand-in failed)."""
        with self.lock:
            self.errors.append({"operation": operation, "status": status, "kind": kind, "messages": messages})
        log.warning("stand-in: %s refused (%s, %s): %s", operation, status, kind, "; ".join(messages))

    # -- what the resolvers use ----------------------------------------------------
    def readable(self, entity: str) -> bool:
        return entity in self.teams

    def writable(self, entity: str) -> None:
        if entity not in self.teams:
            # Our choice of wording; W&B refuses writes to an entity the key is not a member of.
            raise ServiceError(f"permission denied: this API key cannot write to entity {entity!r}", 403)

    def find_sweep(self, entity: str, project: str, name: str) -> Sweep | None:
        sweep = self.sweeps.get(name)
        if sweep and (sweep.entity, sweep.project) == (entity, project):
            return sweep
        return None

    def sweep_by_node_id(self, node_id: str) -> Sweep:
        for sweep in self.sweeps.values():
            if sweep.node_id == node_id:
                return sweep
        raise ServiceError(f"Sweep {node_id} not found", 404)

    def upsert_sweep(self, data: dict) -> dict:
        if data.get("id"):
            sweep = self.sweep_by_node_id(data["id"])
            for key, value in (("entityName", sweep.entity), ("projectName", sweep.project)):
                if data.get(key) and data[key] != value:
                    raise ServiceError(f"Sweep {data['id']} not found in {data[key]}", 404)
            self.writable(sweep.entity)
            if data.get("config") is not None:
                # A started sweep cannot be reconfigured (wandb/wandb#12415); the model takes
                # no new config at all (our choice: `wandb sweep --update` of a sweep no agent
                # has joined yet is not modelled), so nothing sent is silently ignored.
                raise ServiceError("cannot reconfigure sweep which has already started", 400)
            if data.get("state"):
                self._change_state(sweep, data["state"].upper())
            return {"sweep": _SweepView(self, sweep), "inserted": False, "configValidationWarnings": []}
        entity = data.get("entityName") or self.entity
        project = data.get("projectName") or "uncategorized"
        self.writable(entity)
        try:
            config = yaml.safe_load(data.get("config") or "")
        except yaml.YAMLError as exc:
            raise ServiceError(f"Invalid sweep config: not YAML: {exc}", 400) from exc
        if not isinstance(config, dict):
            raise ServiceError("Invalid sweep config: it must be a mapping", 400)
        prior = self._prior_filter(entity, project, data.get("priorRunsFilters"))
        sweep = self.create_sweep(config, entity=entity, project=project)
        sweep.description = data.get("description")
        sweep.prior = prior
        if data.get("state"):
            self._change_state(sweep, data["state"].upper())
        log.info("stand-in: created sweep %s", sweep.path)
        return {
            "sweep": _SweepView(self, sweep),
            "inserted": True,
            "configValidationWarnings": sweep.warnings,
        }

    def _prior_filter(self, entity: str, project: str, filters) -> list[str]:
        """The runs priorRunsFilters names: wandb sends {"$or": [{"name": RUN}, ...]}
        (wandb.sweep(prior_runs=...), "The run IDs of existing runs to add to this sweep",
        https://docs.wandb.ai/ref/python/functions/sweep). W&B applies any MongoDB-style
        filter; the model applies only this form and refuses the rest. Names that match no
        run of the project match nothing, as a filter does."""
        if not filters:
            return []
        try:
            wanted = json.loads(filters) if isinstance(filters, str) else filters
        except ValueError as exc:
            raise ServiceError(f"priorRunsFilters is not JSON: {exc}", 400) from exc
        terms = wanted.get("$or") if isinstance(wanted, dict) and set(wanted) == {"$or"} else None
        if not isinstance(terms, list) or not all(
            isinstance(t, dict) and set(t) == {"name"} and isinstance(t["name"], str) for t in terms
        ):
            raise ServiceError('stand-in: priorRunsFilters applies only {"$or": [{"name": RUN}, ...]}', 400)
        known = {name for (e, p, name) in self.runs if (e, p) == (entity, project)}
        for sweep in self.sweeps.values():
            if (sweep.entity, sweep.project) == (entity, project):
                known |= {a.run_id for a in self._latest_assignments(sweep)}
        names = []
        for term in terms:
            if term["name"] in known and term["name"] not in names:
                names.append(term["name"])
        return names

    def create_agent(self, data: dict) -> dict:
        entity = data.get("entityName") or self.entity
        project = data.get("projectName") or "uncategorized"
        # The agent sends the sweep's bare name, with its entity and project beside it
        # (wandb/apis/public/sweeps.py _register_agent); a path is no sweep's name.
        name = data["sweep"]
        sweep = self.find_sweep(entity, project, name)
        if sweep is None or not self.readable(entity):
            raise ServiceError(f"Sweep {entity}/{project}/{name} not found", 404)
        self.writable(entity)
        if sweep.state not in ("RUNNING", "PENDING", "PAUSED"):
            raise ServiceError(f"Sweep {sweep.path} is not running", 400)
        agent = Agent(id=new_id(12), sweep=sweep.path, host=data.get("host") or "?", created=self.clock())
        self.agents[agent.id] = agent
        log.info("stand-in: agent %s on %s joined %s", agent.id, agent.host, sweep.path)
        return {"agent": {"id": agent.id, "name": agent.id, "host": agent.host, "state": "RUNNING"}}

    def heartbeat(self, data: dict) -> dict:
        run_state = json.loads(data.get("runState") or "{}")
        now = self.clock()
        agent = self.agents.get(data.get("id"))
        if agent is None:
            raise ServiceError("agent not found", 404)
        sweep = self.sweep(agent.sweep)
        agent.last_heartbeat = now
        agent.heartbeats += 1
        alive = {run_id for run_id, running in run_state.items() if running}
        for a in self.assignments:
            # A pending run is its agent's to start: the agent's word keeps it pending. A
            # started run is alive while its own process reports (file_stream).
            if a.agent_id == agent.id and a.run_id in alive and a.end is None and not a.online:
                a.last_seen = now
        for run_id in agent.running - alive:
            self._vanished(agent, run_id, now)
        # Runs still alive that this agent was given (a run is only in agent.running once assigned).
        agent.running = {r for r in alive if self._assigned(agent, r)}
        self._settle(now)
        # An agent told to exit gets nothing more: no run, whatever it asks.
        commands = [{"type": "exit"}] if agent.exited else self._commands_for(sweep, agent, now)
        if any(c["type"] == "exit" for c in commands):
            agent.exited = True
        return {"agent": {"id": agent.id, "name": agent.id}, "commands": json.dumps(commands)}

    def _assigned(self, agent: Agent, run_id: str) -> bool:
        return any(a.agent_id == agent.id and a.run_id == run_id for a in self.assignments)

    def _vanished(self, agent: Agent, run_id: str, now: float) -> None:
        """The agent reports a run gone: its process ended. W&B decides nothing from that:
        the run ends with its own final record, or when it has been silent for the stale
        timeout (its last report was its last sign of life)."""
        for a in reversed(self.assignments):
            if a.agent_id == agent.id and a.run_id == run_id and a.end is None:
                a.vanished = a.vanished or now
                break

    def _close(self, a: Assignment, now: float) -> None:
        """End an attempt and decide its state (see the module's docstring)."""
        sweep = self.sweep(a.sweep)
        a.end = now
        if a.stopped_by_server:
            a.state = "killed"
        elif a.exitcode == 0:
            a.state = "finished"
        elif a.preempting and sweep.state != "CANCELED":
            # A non-zero exit after mark_preempting(), or silence after it (a preempted
            # machine): W&B requeues the run (its preemptible-sweeps contract).
            a.state = "preempted"
            sweep.requeue.append(a)
        elif a.exitcode is not None:
            a.state = "failed"
        else:
            a.state = "crashed"  # silent for the stale timeout: killed, or died before it could say

    def _settle(self, now: float) -> None:
        """Runs nobody has reported on for the stale timeout have crashed (or, preempting,
        are preempted and requeued)."""
        for a in self.assignments:
            if a.end is None and not a.deleted and now - max(a.last_seen, a.start) > self.run_timeout:
                self._close(a, now)

    def _commands_for(self, sweep: Sweep, agent: Agent, now: float) -> list[dict]:
        if sweep.state == "CANCELED":
            # Cancelling ends the runs abruptly, with no chance to run signal handlers (W&B
            # docs, pause-resume-and-cancel-sweeps): the agents are told to exit, which
            # SIGKILLs their runs (wandb_agent.py _command_exit). The runs were killed at the
            # cancel itself (_change_state).
            return [{"type": "exit"}]
        if sweep.state == "FINISHED":
            return [] if agent.running else [{"type": "exit"}]
        if sweep.state == "PAUSED" or agent.running:
            return []
        nxt = self._next_assignment(sweep, agent, now)
        if nxt is None:
            busy = any(a.end is None for a in self.assignments if a.sweep == sweep.path and not a.deleted)
            if not busy and not sweep.requeue:
                sweep.state = "FINISHED"
                sweep.updated = now
                log.info("stand-in: sweep %s finished", sweep.path)
                return [{"type": "exit"}]
            return []
        agent.running.add(nxt.run_id)
        return [
            {
                "type": "run",
                "run_id": nxt.run_id,
                "program": sweep.config.get("program"),
                "args": {k: {"value": v} for k, v in nxt.params.items()},
            }
        ]

    def _latest_assignments(self, sweep: Sweep) -> list[Assignment]:
        latest: dict[str, Assignment] = {}
        for a in self.assignments:
            if a.sweep == sweep.path and not a.deleted:
                latest[a.run_id] = a
        return list(latest.values())

    def _next_assignment(self, sweep: Sweep, agent: Agent, now: float) -> Assignment | None:
        # A preempted run goes to an agent on another host first: its own host is most
        # likely going down (our choice). Failing that, new work comes first.
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

    def _taken_by_deleted(self, sweep: Sweep, a: Assignment) -> bool:
        """Whether a deleted run's value still counts as done for the sweep's search."""
        resumed = sweep.resumed_after_finish
        rescheduled = self.reschedule_deleted and resumed is not None and resumed >= (a.deleted_at or 0)
        return not rescheduled

    def prior_runs(self, sweep: Sweep) -> list[tuple[str, str, dict]]:
        """The runs added at creation (priorRunsFilters): (name, state, params), as they are now."""
        found = []
        for name in sweep.prior:
            latest = None
            for a in self.assignments:
                if (
                    a.run_id == name
                    and a.sweep.startswith(f"{sweep.entity}/{sweep.project}/")
                    and not a.deleted
                ):
                    latest = a
            run = self.runs.get((sweep.entity, sweep.project, name))
            if latest is not None:
                found.append((name, latest.state, dict(latest.params)))
            elif run is not None:
                try:
                    config = json.loads(run.config or "{}")
                except ValueError:
                    config = {}
                params = {k: v.get("value") for k, v in config.items() if isinstance(v, dict)}
                found.append((name, "running", params))
        return found

    def _suggest(self, sweep: Sweep):
        runs = []
        latest = self._latest_assignments(sweep)
        deleted: dict[str, Assignment] = {}
        for a in self.assignments:
            if a.sweep == sweep.path and a.deleted and self._taken_by_deleted(sweep, a):
                deleted[a.run_id] = a
        own = [(a.run_id, a.state, a.params) for a in [*latest, *deleted.values()]]
        mine = {name for name, _state, _params in own}
        prior = [entry for entry in self.prior_runs(sweep) if entry[0] not in mine]
        for name, state, params in [*own, *prior]:
            state = state if state in sweeps.RunState.__members__ else "running"
            runs.append(
                sweeps.SweepRun(
                    name=name,
                    state=state,
                    config={k: {"value": v} for k, v in params.items()},
                    summaryMetrics=sweep.summaries.get(name, {}),
                )
            )
        cap = sweep.config.get("run_cap")
        if isinstance(cap, int) and len(runs) >= cap:
            return None  # run_cap reached: W&B hands out no more runs
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return sweeps.next_run(sweep.config, runs)
        except Exception as exc:  # a config W&B accepted with warnings but cannot search
            log.warning("stand-in: sweep %s cannot be searched: %s", sweep.path, exc)
            return None

    # Run side (the child processes of the agent, when online).
    def upsert_bucket(self, data: dict) -> dict:
        entity = data.get("entityName") or self.entity
        project = data.get("modelName") or "uncategorized"
        self.writable(entity)
        name = data.get("name") or new_id()
        key = (entity, project, name)
        inserted = key not in self.runs
        sweep_name = data.get("sweep")
        sweep = self.find_sweep(entity, project, sweep_name) if sweep_name else None
        if sweep_name and sweep is None:
            raise ServiceError(f"Sweep {entity}/{project}/{sweep_name} not found", 404)
        run = self.runs.get(key) or Run(name=name, entity=entity, project=project, number=next(self._numbers))
        # A run joins a sweep only when the sweep handed it out (our choice: W&B's
        # scheduler knows its runs; a client cannot add one by naming the sweep).
        if sweep is not None and any(a.run_id == name for a in self._latest_assignments(sweep)):
            run.sweep = sweep_name
        run.config = data.get("config") or run.config
        if data.get("tags") is not None:
            run.tags = sorted(set(data["tags"]))
        self.runs[key] = run
        self.projects.add((entity, project))
        for a in reversed(self.assignments):
            if a.run_id == name and a.sweep.startswith(f"{entity}/{project}/") and not a.deleted:
                self._online(a, self.clock())
                a.tags = run.tags
                break
        return {"bucket": _RunView(self, run), "inserted": inserted}

    @staticmethod
    def _online(a: Assignment, now: float) -> None:
        """The run's own process reports: it has started, and is alive now."""
        a.online = True
        a.last_seen = now
        if a.state == "pending":
            a.state = "running"

    def file_stream(self, entity: str, project: str, run_id: str, body: dict) -> tuple[int, dict]:
        now = self.clock()
        with self.lock:
            if (entity, project, run_id) not in self.runs:
                return 404, {"error": f"run {entity}/{project}/{run_id} not found"}
            run = self.runs[(entity, project, run_id)]
            summary = body.get("files", {}).get("wandb-summary.json", {}).get("content")
            history = body.get("files", {}).get("wandb-history.jsonl", {}).get("content") or []
            run.history_lines += len(history)
            for a in reversed(self.assignments):
                if a.run_id == run_id and a.sweep.startswith(f"{entity}/{project}/") and not a.deleted:
                    if a.end is not None:
                        break  # killed (a cancelled sweep) or crashed: late records change nothing
                    self._online(a, now)
                    if body.get("preempting"):
                        a.preempting = True
                    sweep = self.sweep(a.sweep)
                    if summary:
                        with contextlib.suppress(ValueError):
                            sweep.summaries[run_id] = json.loads(summary[-1])
                    if body.get("complete") and body.get("exitcode") is not None:
                        a.exitcode = int(body["exitcode"])
                        # The run's own final record ends it, even when its agent is no longer
                        # heartbeating (a draining or stopping agent).
                        if a.end is None:
                            self._close(a, now)
                    break
        return 200, {"exitcode": None, "limits": {}}


class _Root:
    """The resolvers: graphql-core calls a method named as the field, with its arguments."""

    def __init__(self, standin: StandIn):
        self.s = standin

    # Query
    def viewer(self, _info):
        s = self.s
        return {
            "id": _node_id("User", 1),
            "entity": s.entity,
            "username": s.entity,
            "email": f"{s.entity}@example.invalid",
            "flags": "{}",
            "admin": False,
            "teams": {
                "edges": [{"node": {"id": _node_id("Entity", i), "name": t}} for i, t in enumerate(s.teams)]
            },
            "userInfo": "{}",
            "defaultFramework": None,
        }

    def serverInfo(self, _info):
        return {"cliVersionInfo": {}, "latestLocalVersionInfo": None, "features": []}

    def project(self, _info, name=None, entityName=None):
        entity = entityName or self.s.entity
        if not name or not self.s.readable(entity) or (entity, name) not in self.s.projects:
            return None
        return _ProjectView(self.s, entity, name)

    model = project

    def entity(self, _info, name):
        if not self.s.readable(name):
            return None
        return {"id": _node_id("Entity", self.s.teams.index(name)), "name": name, "organization": None}

    # Mutation
    def upsertSweep(self, _info, input):
        return self.s.upsert_sweep(input)

    def createAgent(self, _info, input):
        return self.s.create_agent(input)

    def agentHeartbeat(self, _info, input):
        return self.s.heartbeat(input)

    def upsertBucket(self, _info, input):
        return self.s.upsert_bucket(input)

    def createRunFiles(self, _info, input):
        entity, project, run = input["entityName"], input["projectName"], input["runName"]
        if (entity, project, run) not in self.s.runs:
            raise ServiceError(f"run {entity}/{project}/{run} not found", 404)
        return {
            "runID": self.s.runs[(entity, project, run)].node_id,
            "uploadHeaders": [],
            "files": [
                {"name": f, "uploadUrl": f"{self.s.url}/_upload/{entity}/{project}/{run}/{f}"}
                for f in input["files"]
            ],
        }

    def deleteRun(self, _info, input):
        for (entity, project, name), run in list(self.s.runs.items()):
            if run.node_id == input["id"]:
                self.s.writable(entity)
                sweep = self.s.find_sweep(entity, project, run.sweep) if run.sweep else None
                if sweep:
                    self.s._delete_run(sweep, name)
                self.s.runs.pop((entity, project, name), None)
                return {"clientMutationId": None}
        # A run handed out whose process never reported: W&B has its record all the same.
        for sweep in list(self.s.sweeps.values()):
            for a in self.s._latest_assignments(sweep):
                if _node_id("Run", unseen_number(a.run_id)) == input["id"]:
                    self.s.writable(sweep.entity)
                    self.s._delete_run(sweep, a.run_id)
                    return {"clientMutationId": None}
        raise ServiceError(f"run {input['id']} not found", 404)


def _page(items: list, first, after, node) -> dict:
    """A Relay connection over ``items``; the cursor is the position after the last one."""
    start = int(after) if after else 0
    count = min(first if first is not None else len(items), PAGE_LIMIT)
    chunk = items[start : start + count]
    end = start + len(chunk)
    return {
        "pageInfo": {
            "hasNextPage": end < len(items),
            "endCursor": str(end) if chunk else after,
            "startCursor": str(start),
            "hasPreviousPage": start > 0,
        },
        "edges": [{"cursor": str(start + i + 1), "node": node(item)} for i, item in enumerate(chunk)],
    }


class _ProjectView:
    def __init__(self, s: StandIn, entity: str, name: str):
        self.s, self.entity_name, self.name = s, entity, name
        self.id = _node_id("Project", hash((entity, name)) & 0xFFFFFF)
        self.entityName = entity
        self.readOnly = False
        self.entity = {"id": _node_id("Entity", s.teams.index(entity)), "name": entity, "organization": None}

    def _sweeps(self) -> list[Sweep]:
        return [
            sw for sw in self.s.sweeps.values() if (sw.entity, sw.project) == (self.entity_name, self.name)
        ]

    def sweep(self, _info, sweepName):
        found = self.s.find_sweep(self.entity_name, self.name, sweepName)
        return _SweepView(self.s, found) if found else None

    def sweeps(self, _info, first=None, after=None, filters=None, order=None):
        return _page(self._sweeps(), first, after, lambda sw: _SweepView(self.s, sw))

    def totalSweeps(self, _info):
        return len(self._sweeps())

    def _runs(self) -> list[Run]:
        return [r for r in self.s.runs.values() if (r.entity, r.project) == (self.entity_name, self.name)]

    def run(self, _info, name):
        found = self.s.runs.get((self.entity_name, self.name, name))
        return _RunView(self.s, found) if found else None

    def bucket(self, info, name, missingOk=None):
        return self.run(info, name)

    def runs(self, _info, first=None, after=None, filters=None, order=None):
        runs = self._runs()
        if filters:
            try:
                wanted = json.loads(filters)
            except ValueError as exc:
                raise ServiceError(f"filters is not JSON: {exc}", 400) from exc
            # W&B applies any MongoDB-style filter; the model applies only these, and refuses
            # the rest rather than answer as if it had applied them.
            unknown = sorted(set(wanted) - {"sweep"}) if isinstance(wanted, dict) else ["(not a mapping)"]
            if unknown:
                raise ServiceError(f"stand-in: runs(filters:) does not apply {', '.join(unknown)}", 400)
            if "sweep" in wanted:
                runs = [r for r in runs if r.sweep == wanted["sweep"]]
        return _page(runs, first, after, lambda r: _RunView(self.s, r))


class _SweepView:
    def __init__(self, s: StandIn, sweep: Sweep):
        self.s, self.sw = s, sweep
        self.id = sweep.node_id
        self.name = sweep.id
        self.displayName = sweep.config.get("name")
        self.method = sweep.config.get("method")
        self.state = sweep.state
        self.description = (
            sweep.description if sweep.description is not None else sweep.config.get("description")
        )
        self.config = sweep.config_yaml
        self.createdAt = _iso(sweep.created)
        self.updatedAt = _iso(sweep.updated)
        self.heartbeatAt = None
        self.earlyStopJobRunning = False
        self.bestLoss = None
        self.controller = None
        self.controllerRunName = None
        self.scheduler = None
        self.runCountExpected = sweep.expected

    def _runs(self) -> list[Run]:
        own = [
            r
            for r in self.s.runs.values()
            if (r.entity, r.project, r.sweep) == (self.sw.entity, self.sw.project, self.sw.id)
        ] + self._unseen()
        return own + self._prior(exclude={r.name for r in own})

    def _prior(self, exclude: set) -> list[Run]:
        """The runs added at creation. Our choice: they stay listed by the sweep they ran in
        too (W&B does not document whether adding a run to a sweep moves it)."""
        added = []
        for name, _state, params in self.s.prior_runs(self.sw):
            if name in exclude:
                continue
            run = self.s.runs.get((self.sw.entity, self.sw.project, name))
            added.append(run or Run(
                name=name, entity=self.sw.entity, project=self.sw.project, number=unseen_number(name),
                sweep=self.sw.id, config=json.dumps({k: {"value": v} for k, v in params.items()}),
            ))  # fmt: skip
        return added

    def _unseen(self) -> list[Run]:
        """Runs handed out whose process never reported (W&B knows them from the scheduler)."""
        known = {
            r.name for r in self.s.runs.values() if (r.entity, r.project) == (self.sw.entity, self.sw.project)
        }
        names = []
        for a in self.s._latest_assignments(self.sw):
            if a.run_id not in known:
                params = json.dumps({k: {"value": v} for k, v in a.params.items()})
                names.append(
                    Run(name=a.run_id, entity=self.sw.entity, project=self.sw.project,
                        number=unseen_number(a.run_id), sweep=self.sw.id, config=params)
                )  # fmt: skip
        return names

    def runCount(self, _info):
        return len(self._runs())

    def project(self, _info):
        return _ProjectView(self.s, self.sw.entity, self.sw.project)

    def runs(self, _info, first=None, after=None, order=None):
        return _page(self._runs(), first, after, lambda r: _RunView(self.s, r, self.sw))


class _RunView:
    def __init__(self, s: StandIn, run: Run, sweep: Sweep | None = None):
        self.s, self.run = s, run
        attempts = [
            a
            for a in s.assignments
            if a.run_id == run.name and a.sweep.startswith(f"{run.entity}/{run.project}/") and not a.deleted
        ]
        latest = attempts[-1] if attempts else None
        self.id = run.node_id
        self.name = run.name
        self.displayName = run.name
        self.description = None
        self.notes = None
        self.state = latest.state if latest else "running"
        self.config = (
            json.dumps({k: {"value": v} for k, v in latest.params.items()}) if latest else run.config
        )
        summary = sweep or (s.sweeps.get(run.sweep) if run.sweep else None)
        self.summaryMetrics = json.dumps(summary.summaries.get(run.name, {}) if summary else {})
        self.exitcode = latest.exitcode if latest else None
        self.heartbeatAt = _iso(latest.last_seen) if latest else None
        self.createdAt = _iso(run.created)
        self.shouldStop = bool(latest and latest.stopped_by_server)
        self.failed = self.state in ("failed", "crashed")
        self.stopped = self.state == "killed"
        self.running = bool(latest and latest.end is None)
        self.sweepName = run.sweep
        self.tags = run.tags
        self.group = None
        self.jobType = None
        self.historyLineCount = run.history_lines
        self.logLineCount = 0
        self.eventsLineCount = 0
        self.historyTail = "[]"
        self.eventsTail = "[]"
        self.runInfo = {"args": []}

    def sampledHistory(self, _info, specs):
        return [[]]

    def wandbConfig(self, _info, keys=None):
        return "{}"

    def project(self, _info):
        return _ProjectView(self.s, self.run.entity, self.run.project)


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


OPERATION_RE = re.compile(r"^\s*(?:query|mutation)\s+(\w+)", re.MULTILINE)


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

    def _fault(self, operation: str, after: bool = False) -> bool:
        """Answer with the injected fault for this request, if any (``after``: once it has
        been carried out)."""
        fault = self.standin._fault_for(operation, after)
        if fault is None:
            return False
        if fault.kind == "delay":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "redirect":
            self.send_response(302)
            self.send_header("Location", fault.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if fault.kind == "blackhole":
            time.sleep(fault.seconds)
            self.close_connection = True  # dropped, never answered
            return True
        if fault.kind == "http429":
            data = json.dumps({"errors": [{"message": "rate limit exceeded"}]}).encode()
            self.send_response(429)
            # The standard header, and W&B's own (support: rate-limit-exceeded-on-metric-logging).
            self.send_header("Retry-After", str(int(fault.seconds)))
            self.send_header("RateLimit-Remaining", "0")
            self.send_header("RateLimit-Reset", str(int(fault.seconds)))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True
        self._send(500, {"errors": [{"message": "stand-in: injected fault"}]})
        return True

    def do_GET(self) -> None:
        s = self.standin
        if self.path == "/_standin/records":
            self._send(200, s.records())
        elif self.path == "/_standin/sweeps":
            self._send(200, s.sweep_summary())
        elif self.path == "/_standin/errors":
            self._send(200, s.errors)
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
            status, body = s.execute(query, payload.get("variables") or {}, operation)
            if self._fault(operation, after=True):
                return
            self._send(status, body)
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
            self._send(*s.file_stream(*match.groups(), body))
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
        except (ValueError, KeyError, TypeError, ServiceError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, {"ok": True})


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
