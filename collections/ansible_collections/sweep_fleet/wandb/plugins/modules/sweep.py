#!/usr/bin/python
# Copyright: sweep-fleet developers
# Apache License 2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sweep
short_description: Create a W&B sweep once, join an existing one, or change its state
description:
  - Finds the sweep in the project whose config equals O(config) and creates it only when
    there is none, so that re-runs and new hosts join the same sweep.
  - A sweep's lineage is the project's sweeps of the same name (the config's C(name)) that
    sweep-fleet made, or any of that name when the name is not empty; its newest is the sweep
    the fleet runs. When O(config) differs from it, the new sweep is its successor, created
    seeded with the runs whose values are done or under way (finished, running,
    pending, preempting), as C(wandb.sweep(prior_runs=...)) seeds a sweep, so that those
    values never run again; its description names the sweep it follows. The old sweep is
    paused first (it hands out no run while the fleet moves; its running runs go on) and
    stopped (V(FINISHED)) once none of its runs is running, by this call or a later one.
  - A change of method, metric (name or goal), program or command cannot be a successor,
    so it fails unless O(replace).
  - With O(sweep_id), joins a sweep created elsewhere (its config is not needed).
  - O(state) can pause, resume, finish (stop) or cancel the sweep, as C(wandb sweep --pause),
    C(--resume), C(--stop) and C(--cancel) do.
  - Talks to the W&B GraphQL API directly; the controller does not need the wandb package.
version_added: "0.1.0"
options:
  config:
    description: The sweep config (program, method, metric, parameters, command, ...).
    type: dict
  sweep_id:
    description: An existing sweep, as ID, PROJECT/ID or ENTITY/PROJECT/ID.
    type: str
  entity:
    description: The W&B entity (user or team). Defaults to the key's default entity.
    type: str
  project:
    description: The W&B project. Required unless O(sweep_id) names it or O(config) has C(project).
    type: str
  base_url:
    description: The W&B API address; a self-hosted server's URL.
    type: str
    default: https://api.wandb.ai
  api_key:
    description: The W&B API key.
    type: str
    required: true
  state:
    description:
      - V(present) finds or creates the sweep and leaves its state alone.
      - V(running) resumes, V(paused) pauses, V(finished) stops (running runs finish),
        V(canceled) cancels (running runs are killed).
    type: str
    choices: [present, running, paused, finished, canceled]
    default: present
  rerun:
    description:
      - Run again the values whose runs crashed, failed, were killed or preempted in a sweep
        the fleet leaves; a successor with the same config is created, seeded with the runs
        that are done or under way; nothing is deleted. Check mode lists the runs whose values
        would run again (RV(rerun_runs)).
      - With O(rerun_delete), the runs in O(rerun_states) are deleted instead and the sweep is
        resumed, the way W&B documents for a grid that has completed (it must be V(FINISHED)).
      - W&B itself never runs a grid value again whose run crashed or failed.
    type: bool
    default: false
    version_added: "0.3.0"
  rerun_delete:
    description: Rerun by deleting the runs in O(rerun_states) and resuming the completed sweep.
    type: bool
    default: false
    version_added: "0.7.0"
  rerun_states:
    description: The states whose runs O(rerun_delete) deletes.
    type: list
    elements: str
    choices: [crashed, failed, killed]
    default: [crashed, failed]
    version_added: "0.7.0"
  replace:
    description:
      - When O(config) changes what a successor must keep (method, metric, program, command),
        create a fresh sweep (no runs seeded) that replaces the fleet's sweep, instead of
        failing.
    type: bool
    default: false
    version_added: "0.7.0"
  create:
    description:
      - Create the sweep when no sweep in the project has O(config). V(false) fails instead, for
        tasks that only look at or control an existing sweep.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each API request.
    type: int
    default: 30
  retry_seconds:
    description:
      - For how long to keep asking while the API cannot be reached or answers 429 or 5xx
        (an outage), waiting 1, 2, 4, ... up to 30 seconds between tries; then the task fails
        naming the address. A sweep is created at most once (after a lost answer the
        project is searched for it before asking again).
    type: int
    default: 120
    version_added: "0.3.0"
  validate_certs:
    description: Check the server's TLS certificate.
    type: bool
    default: true
author:
  - sweep-fleet developers (@sweep-fleet)
"""

EXAMPLES = r"""
- name: Create the sweep once
  sweep_fleet.wandb.sweep:
    config:
      program: main.py
      method: grid
      parameters:
        data_path:
          values: [datasets/part1.csv, datasets/part2.csv]
    project: beauty-score
    api_key: "{{ wandb_credentials_api_key }}"
  delegate_to: localhost
  run_once: true
  register: sweep

- name: Pause it
  sweep_fleet.wandb.sweep:
    sweep_id: "{{ sweep.sweep_path }}"
    state: paused
    api_key: "{{ wandb_credentials_api_key }}"
"""

RETURN = r"""
sweep_id:
  description: The sweep's short ID (null in check mode when it would be created).
  type: str
  returned: always
sweep_path:
  description: ENTITY/PROJECT/ID, what C(wandb agent) takes.
  type: str
  returned: always
url:
  description: The sweep's page in the W&B web UI.
  type: str
  returned: always
state:
  description: The sweep's state after the task (RUNNING, PAUSED, FINISHED, CANCELED, PENDING).
  type: str
  returned: always
created:
  description: Whether the sweep was created by this task.
  type: bool
  returned: always
run_count:
  description: Runs the sweep has so far, as W&B counts them.
  type: int
  returned: when the sweep exists
run_count_expected:
  description: Runs the sweep will have in all (a grid's size), null when not known (random, bayes).
  type: int
  returned: when the sweep exists
runs_by_state:
  description: How many of the sweep's runs are in each state (finished, running, crashed, ...).
  type: dict
  returned: when the sweep exists
rerun_runs:
  description: The runs whose values run again (deleted with O(rerun_delete)), by name.
  type: list
  elements: str
  returned: when O(rerun) is given
error:
  description: A failure's message (the same as C(msg)), for a task whose own output is hidden.
  type: str
  returned: on failure
predecessor:
  description:
    - The sweep this one follows (its description names it), with its state and how many of
      its runs are still running; null for the first sweep of a lineage.
  type: dict
  returned: when the sweep exists or would be created
config_diff:
  description: The change of the sweep config, as unified diff lines, when a new sweep follows another.
  type: list
  elements: str
  returned: when a successor or a replacement is or would be created
successor:
  description:
    - For a new successor, what it takes over (V(seeded), runs) and, for a grid, how many of
      its V(grid_values) are already done (V(done)) and how many will run (V(to_run)); V(changes),
      the config's top-level keys that changed.
  type: dict
  returned: when a successor is or would be created
"""


import difflib  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

try:  # the module runs on the controller, whose ansible-core brings PyYAML
    import yaml
except ImportError:  # pragma: no cover
    yaml = None
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.sweep_config import (  # noqa: E402
    canonical,
    fill_distributions,
    grid_points,
    grid_size,
    points_done,
    successor_problems,
    sweep_config_problems,
)
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.wandb_api import (  # noqa: E402
    ENTITY_RE,
    SWEEP_NAME_RE,
    WandbApi,
    WandbApiError,
    app_url,
    split_sweep_ref,
)

TARGET = {"running": "RUNNING", "paused": "PAUSED", "finished": "FINISHED", "canceled": "CANCELED"}


def _load(config_text):
    try:
        return yaml.safe_load(config_text or "") or {}
    except yaml.YAMLError:
        return {}


def _allowed(current: str, target: str) -> str | None:
    """Why W&B would refuse this change (as the wandb CLI checks it), or None."""
    if target == "RUNNING" and current == "CANCELED":
        return (
            "a cancelled sweep cannot be resumed: start a new one (change its config, e.g. wandb_sweep_name)"
        )
    if target == "PAUSED" and current not in ("RUNNING", "PAUSED", "PENDING"):
        return f"cannot pause a {current.lower()} sweep: resume it (state: running) first"
    if target in ("FINISHED", "CANCELED") and current not in ("RUNNING", "PAUSED", "PENDING"):
        return f"the sweep is already {current.lower()}"
    return None


def _progress(sweep: dict) -> dict:
    states: dict[str, int] = {}
    for run in sweep.get("runs") or []:
        state = (run.get("state") or "unknown").lower()
        states[state] = states.get(state, 0) + 1
    return {
        "run_count": sweep.get("runCount") or sum(states.values()),
        "run_count_expected": sweep.get("runCountExpected") or grid_size(_load(sweep.get("config"))),
        "runs_by_state": states,
    }


def _create_once(
    api: WandbApi,
    entity: str,
    project: str,
    text: str,
    config: dict,
    wanted,
    module,
    description: str | None = None,
    prior_runs: list[str] | None = None,
) -> dict:
    """Create the sweep; when the answer is lost in an outage, look for it before asking
    again, so that a retry never makes a second sweep."""
    backoff = api.backoff()
    while True:
        try:
            created, warnings = api.create_sweep(entity, project, text, description, prior_runs)
        except WandbApiError as err:
            if not (err.transient and backoff.wait()):
                raise
            found = [
                s
                for s in api.sweeps(entity, project)
                if canonical(_load(s.get("config"))) == wanted
                and (s.get("description") or "") == (description or "")
            ]
            if found:
                return api.sweep(entity, project, found[0]["name"]) or found[0]
            continue
        for warning in warnings:
            module.warn(f"W&B warns about the sweep config: {warning}")
        fallback = {"name": created["name"], "id": created.get("id")}
        return api.sweep(entity, project, created["name"]) or fallback


# The line sweep-fleet adds to the description of each sweep it makes: its lineage.
MARK = "sweep-fleet:"
FOLLOWS_RE = re.compile(r"^sweep-fleet: (?:successor of|rerun of|replaces) (\S+)", re.MULTILINE)
# Runs whose values are done or under way: a successor is seeded with them. Crashed, failed,
# killed and preempted ones run again (a preempted run is requeued only to the agents of the
# sweep it ran in, which the fleet leaves).
SEED_STATES = ("finished", "running", "pending", "preempting")
UNDER_WAY = ("running", "pending", "preempting")
OPEN_STATES = ("RUNNING", "PAUSED", "PENDING")


def _description(config: dict, line: str) -> str:
    own = (config.get("description") or "").strip()
    return f"{own}\n\n{MARK} {line}" if own else f"{MARK} {line}"


def _follows(sweep: dict) -> str | None:
    match = FOLLOWS_RE.search(sweep.get("description") or "")
    return match.group(1) if match else None


def _lineage(sweeps: list[dict], config: dict) -> list[dict]:
    """The project's sweeps of this config's name that the fleet may have run: made by
    sweep-fleet, or of a name that is not empty."""
    name = config.get("name")
    return [
        s for s in sweeps
        if _load(s.get("config")).get("name") == name and (name or MARK in (s.get("description") or ""))
    ]  # fmt: skip


def _head(candidates: list[dict]) -> dict:
    """The newest sweep of a lineage (on a tie, one no other names as its predecessor)."""
    followed = {(_follows(s) or "").rsplit("/", 1)[-1] for s in candidates}
    return max(candidates, key=lambda s: (s.get("createdAt") or "", s.get("name") not in followed))


def _params(run: dict) -> dict:
    try:
        config = json.loads(run.get("config") or "{}")
    except (TypeError, ValueError):
        return {}
    if not isinstance(config, dict):
        return {}
    return {
        k: v.get("value") if isinstance(v, dict) else v for k, v in config.items() if not k.startswith("_")
    }


def _split_runs(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(runs a successor is seeded with, runs whose values run again)."""
    seeds = [r for r in runs if (r.get("state") or "").lower() in SEED_STATES]
    again = [r for r in runs if (r.get("state") or "").lower() not in SEED_STATES]
    return seeds, again


def _plan(config: dict, seeds: list[dict], old_config: dict) -> dict:
    points = grid_points(config)
    plan = {
        "seeded": len(seeds),
        "changes": sorted(k for k in set(config) | set(old_config) if config.get(k) != old_config.get(k)),
    }
    if points is not None:
        done = points_done(points, [_params(r) for r in seeds])
        plan.update(grid_values=len(points), done=done, to_run=len(points) - done)
    return plan


def _running(sweep: dict) -> int:
    return sum(1 for r in sweep.get("runs") or [] if (r.get("state") or "").lower() in UNDER_WAY)


def _finish_if_idle(api: WandbApi, entity: str, project: str, sweep: dict, check: bool) -> dict:
    """Stop a sweep the fleet has left once none of its runs is running: (state, running)."""
    state = (sweep.get("state") or "RUNNING").upper()
    if state not in OPEN_STATES:
        return {"state": state, "running": 0}
    full = sweep if "runs" in sweep else (api.sweep(entity, project, sweep["name"]) or sweep)
    running = _running(full)
    if running == 0:
        if not check:
            api.set_state(full.get("id") or full["name"], entity, project, "FINISHED")
        state = "FINISHED"
    return {"state": state, "running": running}


def _predecessor(api, entity, project, sweep, by_name, check) -> dict | None:
    """The sweep ``sweep`` follows, stopped now if the fleet has left it and it is idle."""
    path = _follows(sweep)
    if not path:
        return None
    name = path.rsplit("/", 1)[-1]
    old = by_name.get(name) if path.startswith(f"{entity}/{project}/") else None
    if old is None:
        return {"sweep_path": path, "state": None, "running": None}
    return {"sweep_path": path, **_finish_if_idle(api, entity, project, old, check)}


def _diff(old_config: dict, new_config: dict, old_path: str, result: dict) -> None:
    """The config's change, as Ansible's --diff shows it, and as lines for a task to print."""
    dump = functools.partial(yaml.safe_dump, sort_keys=True, default_flow_style=False)
    before, after = dump(old_config), dump(new_config)
    result["diff"] = {"before": before, "after": after, "before_header": f"sweep {old_path}",
                      "after_header": "the new sweep"}  # fmt: skip
    result["config_diff"] = [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            before.splitlines(True), after.splitlines(True), f"sweep {old_path}", "the new sweep", n=1
        )
    ]


def _hold(api: WandbApi, entity: str, project: str, sweep: dict) -> dict:
    """Pause a running sweep the fleet is about to leave, then read it with its runs: from
    then on it hands out no run (not even a requeued one) while its running runs go on, so
    the runs read are all the runs it will have. A pending sweep has none to hand out."""
    if (sweep.get("state") or "RUNNING").upper() == "RUNNING":
        api.set_state(sweep.get("id") or sweep["name"], entity, project, "PAUSED")
    return api.sweep(entity, project, sweep["name"]) or sweep


def _successor(module, api, entity, project, head, config, text, wanted, line, result) -> dict:
    """Create (or in check mode, plan) a successor of ``head`` seeded with its runs."""
    head_path = f"{entity}/{project}/{head['name']}"
    if module.check_mode:
        full = head if "runs" in head else (api.sweep(entity, project, head["name"]) or head)
    else:
        full = _hold(api, entity, project, head)
    seeds, again = _split_runs(full.get("runs") or [])
    old_config = _load(full.get("config"))
    result["successor"] = _plan(config, seeds, old_config)
    result["rerun_runs"] = sorted(r["name"] for r in again)
    _diff(old_config, config, head_path, result)
    result["changed"] = True
    description = _description(config, f"{line} {head_path}")
    if module.check_mode:
        running = _running(full)
        result["predecessor"] = {"sweep_path": head_path, "state": (full.get("state") or "").upper(),
                                 "running": running}  # fmt: skip
        result["msg"] = f"would create a successor of {head_path}"
        return None
    sweep = _create_once(
        api, entity, project, text, config, wanted, module,
        description=description, prior_runs=[r["name"] for r in seeds],
    )  # fmt: skip
    result["created"] = True
    result["predecessor"] = {"sweep_path": head_path, **_finish_if_idle(api, entity, project, full, False)}
    return sweep


def _describe(module, api: WandbApi, entity: str, project: str, sweep: dict) -> dict:
    """What the task returns of a sweep. What W&B answered is written into the agents'
    settings on every host: each part of the path must be a name, not text that a hostile
    server or proxy chose."""
    name = sweep.get("name")
    for what, part in (("entity", entity), ("sweep id", name)):
        pattern = SWEEP_NAME_RE if what == "sweep id" else ENTITY_RE
        if not (isinstance(part, str) and pattern.match(part)):
            module.fail_json(
                msg=f"the W&B API at {api.base_url} answered {part!r} as the {what}, not a name: refused"
            )
    return {
        "sweep_id": name,
        "sweep_path": f"{entity}/{project}/{name}",
        "url": f"{app_url(api.base_url)}/{entity}/{project}/sweeps/{name}",
        "state": (sweep.get("state") or "RUNNING").upper(),
        **_progress(sweep),
    }


def run(module: AnsibleModule) -> dict:
    p = module.params
    # A key from `echo KEY | ansible-vault encrypt_string` ends in a line break.
    api = WandbApi(
        p["base_url"],
        p["api_key"].strip(),
        timeout=p["timeout"],
        validate_certs=p["validate_certs"],
        retry_seconds=p["retry_seconds"],
    )
    config = p["config"]
    entity, project = p["entity"], p["project"] or (config or {}).get("project")
    result = {
        "changed": False,
        "created": False,
        "sweep_id": None,
        "sweep_path": None,
        "url": None,
        "state": None,
        "predecessor": None,
    }
    by_name: dict = {}
    target = TARGET.get(p["state"])
    if p["rerun"] and target not in (None, "RUNNING"):
        module.fail_json(
            msg="rerun starts the agents on the values again: do not ask for another state with it"
        )

    if p["sweep_id"]:
        try:
            ref_entity, ref_project, name = split_sweep_ref(p["sweep_id"])
        except ValueError as err:
            module.fail_json(msg=str(err))
        entity, project = ref_entity or entity, ref_project or project
        if not project:
            module.fail_json(msg=f"sweep_id {p['sweep_id']!r} does not name a project: give project too")
        if p["rerun"] and not p["rerun_delete"]:
            module.fail_json(
                msg="rerun makes a new sweep, but wandb_sweep_id pins the fleet to this one: rerun with "
                "wandb_sweep_rerun_delete=true once the grid has completed (W&B's way), or leave "
                "wandb_sweep_id empty so that the fleet follows its sweeps"
            )
        entity = entity or api.default_entity()
        sweep = api.sweep(entity, project, name)
        if sweep is None:
            module.fail_json(msg=f"no sweep {entity}/{project}/{name} at {api.base_url}: check the sweep ID")
    else:
        if not config:
            module.fail_json(msg="give config (to find or create the sweep) or sweep_id (to join one)")
        problems = sweep_config_problems(config)
        if problems:
            module.fail_json(msg="the sweep config is not valid: " + "; ".join(problems), problems=problems)
        if not project:
            module.fail_json(msg="project is required (or a project key in the sweep config)")
        entity = entity or config.get("entity") or api.default_entity()
        wanted = canonical(config)
        text = yaml.safe_dump(fill_distributions(config), sort_keys=False)
        listed = api.sweeps(entity, project)
        by_name = {s.get("name"): s for s in listed}
        lineage = _lineage(listed, config)
        head = _head(lineage) if lineage else None
        if head is None:
            # A sweep of another name (or none) made before sweep-fleet marked its sweeps.
            matches = [s for s in listed if canonical(_load(s.get("config"))) == wanted]
            head = matches[0] if matches else None
        same = head is not None and canonical(_load(head.get("config"))) == wanted
        if not same and not p["create"]:
            module.fail_json(
                msg=f"no sweep in {entity}/{project} has this config: deploy it first, or set the sweep's ID"
            )
        if head is None:
            result["changed"] = True
            if module.check_mode:
                result["msg"] = f"would create a sweep in {entity}/{project}"
                return result
            sweep = _create_once(api, entity, project, text, config, wanted, module,
                                 description=_description(config, "new sweep"))  # fmt: skip
            result["created"] = True
        elif same:
            sweep = head
        else:
            head_path = f"{entity}/{project}/{head['name']}"
            refusal = successor_problems(_load(head.get("config")), config)
            if refusal and not p["replace"]:
                module.fail_json(
                    msg=f"the sweep config changed what a successor of {head_path} must keep: "
                    + "; ".join(refusal)
                    + ". Its runs' values would not mean the same. Either set wandb_sweep_replace=true "
                    "for a fresh sweep that runs every value again (the agents move to it), or undo "
                    "that change to grow or narrow this sweep",
                    changes=refusal,
                )
            if refusal:
                result["changed"] = True
                _diff(_load(head.get("config")), config, head_path, result)
                result["predecessor"] = {"sweep_path": head_path, "state": (head.get("state") or "").upper()}
                if module.check_mode:
                    result["msg"] = f"would create a sweep replacing {head_path}"
                    return result
                held = _hold(api, entity, project, head)
                sweep = _create_once(api, entity, project, text, config, wanted, module,
                                     description=_description(config, f"replaces {head_path}"))  # fmt: skip
                result["created"] = True
                result["predecessor"].update(_finish_if_idle(api, entity, project, held, False))
            else:
                sweep = _successor(module, api, entity, project, head, config, text, wanted,
                                   "successor of", result)  # fmt: skip
                if sweep is None:
                    return result

    name = sweep["name"]
    if "runs" not in sweep:  # found in the project's list, which does not carry the runs
        sweep = {**sweep, **(api.sweep(entity, project, name) or {})}  # the list's description stays
    result.update(_describe(module, api, entity, project, sweep))
    if result["predecessor"] is None and not result["created"]:
        result["predecessor"] = _predecessor(api, entity, project, sweep, by_name, module.check_mode)

    if p["rerun"] and p["rerun_delete"]:
        wanted_states = {state.lower() for state in p["rerun_states"]}
        redo = [r for r in sweep.get("runs") or [] if (r.get("state") or "").lower() in wanted_states]
        result["rerun_runs"] = sorted(r["name"] for r in redo)
        if redo:
            if result["state"] != "FINISHED":
                module.fail_json(
                    msg=f"sweep {result['sweep_path']} is {result['state'].lower()}: W&B runs the values of "
                    "deleted runs again only once a grid has completed (then it is resumed). Wait for "
                    "it to finish, or rerun without wandb_sweep_rerun_delete (a new sweep seeded with "
                    "the runs that are done; nothing is deleted)",
                    **result,
                )
            result["changed"] = True
            if not module.check_mode:
                for run_node in redo:
                    api.delete_run(run_node["id"])
                result.update(_progress(api.sweep(entity, project, name) or sweep))
            target = "RUNNING"
    elif p["rerun"]:
        again = _split_runs(sweep.get("runs") or [])[1]
        result["rerun_runs"] = sorted(r["name"] for r in again)
        if again:
            # Whatever the sweep's state: nothing of it is deleted or resumed.
            made = _successor(module, api, entity, project, sweep, config, text, wanted, "rerun of", result)
            result.pop("diff", None)
            result.pop("config_diff", None)
            if made is None:  # check mode
                return result
            result.update(_describe(module, api, entity, project, made))
        target = None
    if target and target != result["state"]:
        refusal = _allowed(result["state"], target)
        if refusal:
            module.fail_json(msg=f"sweep {result['sweep_path']}: {refusal}", **result)
        result["changed"] = True
        if not module.check_mode:
            api.set_state(sweep.get("id") or name, entity, project, target)
        result["state"] = target
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "config": {"type": "dict"},
            "sweep_id": {"type": "str"},
            "entity": {"type": "str"},
            "project": {"type": "str"},
            "base_url": {"type": "str", "default": "https://api.wandb.ai"},
            "api_key": {"type": "str", "required": True, "no_log": True},
            "state": {
                "type": "str",
                "default": "present",
                "choices": ["present", "running", "paused", "finished", "canceled"],
            },
            "rerun": {"type": "bool", "default": False},
            "rerun_delete": {"type": "bool", "default": False},
            "rerun_states": {
                "type": "list",
                "elements": "str",
                "default": ["crashed", "failed"],
                "choices": ["crashed", "failed", "killed"],
            },
            "replace": {"type": "bool", "default": False},
            "create": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 30},
            "retry_seconds": {"type": "int", "default": 120},
            "validate_certs": {"type": "bool", "default": True},
        },
        required_one_of=[("config", "sweep_id")],
        supports_check_mode=True,
    )
    # The role hides the task's result (no_log: its arguments hold the key) and shows this
    # copy of a failure's message, which never holds the key.
    fail = module.fail_json

    def fail_json(msg: str, **kwargs):
        fail(msg=msg, error=msg, **kwargs)

    module.fail_json = fail_json
    if yaml is None:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    try:
        module.exit_json(**run(module))
    except WandbApiError as err:
        module.fail_json(msg=str(err), status=err.status)


if __name__ == "__main__":
    main()
