# Copyright: sweep-fleet developers
# Apache License 2.0
"""A small client for the W&B GraphQL API: the operations the wandb CLI itself sends.

It needs nothing but the Python standard library and Ansible's ``open_url`` (which
honours HTTP(S)_PROXY and NO_PROXY), so the controller does not need wandb installed. The
GraphQL API never redirects, and a redirect is refused: urllib would send the request's
Authorization header (the key) on to wherever it points, https to http included.
"""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

DEFAULT_BASE_URL = "https://api.wandb.ai"
STATES = ("RUNNING", "PAUSED", "FINISHED", "CANCELED")
# A sweep's id, and an entity's name, as W&B makes them (what a server answers is checked
# against these before it goes into the hosts' settings).
SWEEP_NAME_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")
ENTITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

VIEWER = """
query Viewer {
  viewer { id entity username }
}
"""

# As wandb's own GetSweeps, without the `filters` argument that older servers lack.
GET_SWEEPS = """
query GetSweeps($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50) {
  project(name: $project, entityName: $entity) {
    sweeps(after: $cursor, first: $perPage) {
      pageInfo { endCursor hasNextPage }
      edges { node { id name state config description createdAt } }
    }
  }
}
"""

# As wandb's GetSweep and, for servers without the run counts, its GetSweepLegacy.
GET_SWEEP = """
query GetSweep($name: String!, $project: String, $entity: String) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $name) { id name displayName state config runCount runCountExpected }
  }
}
"""
GET_SWEEP_LEGACY = """
query GetSweepLegacy($name: String!, $project: String, $entity: String) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $name) { id name state config }
  }
}
"""

# A sweep's runs, a page at a time (a sweep may have thousands).
GET_SWEEP_RUNS = """
query GetSweepRuns($name: String!, $project: String, $entity: String, $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $name) {
      runs(first: $perPage, after: $cursor) {
        pageInfo { endCursor hasNextPage }
        edges { node { id name state config sweepName } }
      }
    }
  }
}
"""

# Deleting a run, as wandb's public API does (Run.delete); a sweep then runs its values again.
DELETE_RUN = """
mutation DeleteRun($id: ID!) {
  deleteRun(input: {id: $id}) { clientMutationId }
}
"""

# Creating a sweep: with the config validation warnings, and without them for older servers;
# seeded with earlier runs as wandb.sweep(prior_runs=...) sends them (priorRunsFilters).
UPSERT_SWEEP = """
mutation UpsertSweep($config: String, $description: String, $entityName: String, $projectName: String,
                     $priorRunsFilters: JSONString) {
  upsertSweep(input: {config: $config, description: $description, entityName: $entityName,
                      projectName: $projectName, priorRunsFilters: $priorRunsFilters}) {
    sweep { id name project { name entity { name } } }
    configValidationWarnings
  }
}
"""
UPSERT_SWEEP_LEGACY = """
mutation UpsertSweepLegacy($config: String, $description: String, $entityName: String,
                           $projectName: String, $priorRunsFilters: JSONString) {
  upsertSweep(input: {config: $config, description: $description, entityName: $entityName,
                      projectName: $projectName, priorRunsFilters: $priorRunsFilters}) {
    sweep { id name project { name entity { name } } }
  }
}
"""

# As `wandb sweep --pause` (and --resume, --stop, --cancel) sends it.
SET_SWEEP_STATE = """
mutation UpsertSweepState($id: ID, $state: String, $entityName: String, $projectName: String) {
  upsertSweep(input: {id: $id, state: $state, entityName: $entityName, projectName: $projectName}) {
    sweep { name state }
  }
}
"""
RUNS_PER_PAGE = 500


class WandbApiError(Exception):
    """The W&B API refused a request or could not be reached."""

    def __init__(
        self, message: str, status: int | None = None, transient: bool = False, retry_after: float = 0
    ):
        super().__init__(message)
        self.status = status
        # No answer, or one that says "later" (429, 5xx): asking again may work.
        self.transient = transient or status == 429 or (status is not None and status >= 500)
        # Seconds the server asked to wait first (Retry-After, or W&B's RateLimit-Reset).
        self.retry_after = retry_after

    @property
    def unknown_to_server(self) -> bool:
        """The server's schema lacks something the query asks for (an older server)."""
        text = str(self)
        return self.status in (None, 400) and any(
            phrase in text for phrase in ("Cannot query field", "Unknown argument", "unknown field")
        )


def _retry_after(headers) -> float:
    """The wait a 429 or 503 asks for: Retry-After in seconds, or W&B's RateLimit-Reset."""
    for name in ("Retry-After", "RateLimit-Reset"):
        try:
            value = float((headers or {}).get(name) or 0)
        except (TypeError, ValueError):  # an HTTP date: not what W&B sends
            continue
        if value > 0:
            return min(value, 300.0)
    return 0.0


def app_url(base_url: str) -> str:
    """The web UI's address for an API address (api.wandb.ai -> wandb.ai)."""
    parts = urlsplit(base_url.rstrip("/"))
    host = parts.netloc
    if host == "api.wandb.ai":
        host = "wandb.ai"
    return f"{parts.scheme}://{host}"


def split_sweep_ref(ref: str) -> tuple[str | None, str | None, str]:
    """'entity/project/id', 'project/id' or 'id' -> (entity, project, id)."""
    parts = [p for p in ref.strip().split("/") if p]
    if not parts or len(parts) > 3:
        raise ValueError(f"a sweep ID is ID, PROJECT/ID or ENTITY/PROJECT/ID (got {ref!r})")
    parts = [None] * (3 - len(parts)) + parts
    return parts[0], parts[1], parts[2]


class Backoff:
    """Waits of 1, 2, 4, ... 30 seconds through an outage, until ``seconds`` have passed."""

    def __init__(self, seconds: float, sleep=time.sleep):
        self.deadline = time.monotonic() + seconds
        self.delay = 1.0
        self.sleep = sleep

    def wait(self, at_least: float = 0) -> bool:
        """Wait before the next try, at least ``at_least`` seconds (what the server asked for);
        False when the time is up, or would be before then (then ask no more)."""
        left = self.deadline - time.monotonic()
        if left <= 0 or at_least > left:
            return False
        self.sleep(max(min(self.delay, left), at_least))
        self.delay = min(self.delay * 2, 30.0)
        return True


class WandbApi:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = 30,
        validate_certs: bool = True,
        retry_seconds: float = 0,
        sleep=time.sleep,
    ):
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.validate_certs = validate_certs
        # How long to keep asking through an outage (no answer, HTTP 429 or 5xx), with backoff.
        self.retry_seconds = retry_seconds
        self.sleep = sleep
        self.retries = 0

    def graphql(self, query: str, variables: dict | None = None, retry: bool = True) -> dict:
        """The answer's data; transient failures are asked again for ``retry_seconds``
        (``retry=False`` for a write that must not happen twice: the caller checks first)."""
        backoff = self.backoff()
        while True:
            try:
                return self._graphql_once(query, variables)
            except WandbApiError as err:
                if not (retry and err.transient and backoff.wait(err.retry_after)):
                    if err.transient and self.retries:
                        message = f"{err} (still, after {self.retries} retries)"
                        raise WandbApiError(message, err.status) from None
                    raise
                self.retries += 1

    def backoff(self) -> Backoff:
        return Backoff(self.retry_seconds, self.sleep)

    def _graphql_once(self, query: str, variables: dict | None = None) -> dict:
        auth = base64.b64encode(f"api:{self.api_key}".encode()).decode()
        body = json.dumps({"query": query, "variables": variables or {}})
        try:
            resp = open_url(
                f"{self.base_url}/graphql",
                data=body,
                method="POST",
                headers={
                    "Authorization": f"Basic {auth}",
                    "Content-Type": "application/json",
                    "User-Agent": "sweep-fleet",
                },
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                follow_redirects="none",
            )
            payload = json.loads(resp.read() or b"{}")
        except HTTPError as err:
            if 300 <= err.code < 400:
                where = (err.headers.get("Location") if err.headers else None) or err.url
                raise WandbApiError(
                    f"the W&B API at {self.base_url} answered HTTP {err.code}, a redirect to {where}: "
                    "refused (the key is never sent on); set wandb_credentials_base_url to the API's "
                    "own address",
                    err.code,
                ) from None
            raise WandbApiError(
                self._error_text(err), err.code, retry_after=_retry_after(err.headers)
            ) from None
        except URLError as err:
            raise WandbApiError(
                f"cannot reach the W&B API at {self.base_url}: {err.reason}", transient=True
            ) from None
        except OSError as err:
            message = f"cannot talk to the W&B API at {self.base_url}: {err}"
            raise WandbApiError(message, transient=True) from None
        except ValueError as err:
            raise WandbApiError(f"cannot talk to the W&B API at {self.base_url}: {err}") from None
        if payload.get("errors"):
            raise WandbApiError("; ".join(e.get("message", str(e)) for e in payload["errors"]))
        return payload.get("data") or {}

    def _error_text(self, err: HTTPError) -> str:
        try:
            payload = json.loads(err.read() or b"{}")
            messages = [e.get("message", "") for e in payload.get("errors", [])]
        except (ValueError, AttributeError, OSError):
            messages = []
        if err.code == 401:
            return f"the W&B API at {self.base_url} refused the API key (HTTP 401): check the key"
        detail = "; ".join(m for m in messages if m) or err.reason
        return f"the W&B API at {self.base_url} answered HTTP {err.code}: {detail}"

    def graphql_first(self, queries: tuple[str, ...], variables: dict, retry: bool = True) -> dict:
        """The first of ``queries`` (newest first) the server understands, as wandb does."""
        for query in queries[:-1]:
            try:
                return self.graphql(query, variables, retry=retry)
            except WandbApiError as err:
                if not err.unknown_to_server:
                    raise
        return self.graphql(queries[-1], variables, retry=retry)

    def default_entity(self) -> str:
        viewer = self.graphql(VIEWER).get("viewer") or {}
        if not viewer.get("entity"):
            raise WandbApiError("the W&B API did not name a default entity for this key: set the entity")
        return viewer["entity"]

    def sweeps(self, entity: str, project: str) -> list[dict]:
        found, cursor = [], None
        while True:
            data = self.graphql(GET_SWEEPS, {"entity": entity, "project": project, "cursor": cursor})
            node = (data.get("project") or {}).get("sweeps")
            if not node:
                return found
            found += [edge["node"] for edge in node.get("edges") or []]
            page = node.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return found
            cursor = page["endCursor"]

    def sweep(self, entity: str, project: str, name: str, with_runs: bool = True) -> dict | None:
        """The sweep (its runs too, page by page), or None when the project has no such sweep."""
        variables = {"entity": entity, "project": project, "name": name}
        data = self.graphql_first((GET_SWEEP, GET_SWEEP_LEGACY), variables)
        sweep = (data.get("project") or {}).get("sweep")
        if sweep is None or not with_runs:
            return sweep
        runs, cursor = [], None
        while True:
            page = self.graphql(GET_SWEEP_RUNS, {**variables, "cursor": cursor, "perPage": RUNS_PER_PAGE})
            node = ((page.get("project") or {}).get("sweep") or {}).get("runs") or {}
            runs += [edge["node"] for edge in node.get("edges") or []]
            info = node.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                break
            cursor = info["endCursor"]
        return {**sweep, "runs": runs}

    def create_sweep(
        self,
        entity: str,
        project: str,
        config_yaml: str,
        description: str | None,
        prior_runs: list[str] | None = None,
    ) -> tuple[dict, list[str]]:
        """The new sweep, and the warnings the server has about its config. Not retried: a
        lost answer may hide a sweep that was made (the caller looks for it, then asks again).
        ``prior_runs`` (run names) become the new sweep's runs: its search never suggests
        their values again."""
        filters = json.dumps({"$or": [{"name": name} for name in prior_runs]}) if prior_runs else None
        data = self.graphql_first(
            (UPSERT_SWEEP, UPSERT_SWEEP_LEGACY),
            {"config": config_yaml, "entityName": entity, "projectName": project, "description": description,
             "priorRunsFilters": filters},
            retry=False,
        )  # fmt: skip
        return data["upsertSweep"]["sweep"], data["upsertSweep"].get("configValidationWarnings") or []

    def delete_run(self, run_gql_id: str) -> None:
        self.graphql(DELETE_RUN, {"id": run_gql_id})

    def set_state(self, sweep_gql_id: str, entity: str, project: str, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"sweep state must be one of {', '.join(STATES)} (got {state!r})")
        self.graphql(
            SET_SWEEP_STATE,
            {"id": sweep_gql_id, "state": state, "entityName": entity, "projectName": project},
        )
