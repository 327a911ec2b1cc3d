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
      - Run again the values of the sweep's runs in these states. Those runs are deleted (W&B's
        way to re-run them) and the sweep is resumed, so that its agents take those values
        again. Finished and running runs are never touched. Check mode lists the runs it
        would delete (RV(rerun_runs)) and deletes nothing.
      - W&B itself never runs a grid value again whose run crashed or failed.
    type: list
    elements: str
    choices: [crashed, failed, killed]
    default: []
    version_added: "0.3.0"
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
  description: The runs deleted to run their values again (in check mode, those that would be), by name.
  type: list
  elements: str
  returned: when O(rerun) is given
"""


from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

try:  # the module runs on the controller, whose ansible-core brings PyYAML
    import yaml
except ImportError:  # pragma: no cover
    yaml = None
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.sweep_config import (  # noqa: E402
    canonical,
    fill_distributions,
    grid_size,
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


def _create_once(api: WandbApi, entity: str, project: str, text: str, config: dict, wanted, module) -> dict:
    """Create the sweep; when the answer is lost in an outage, look for it before asking
    again, so that a retry never makes a second sweep."""
    backoff = api.backoff()
    while True:
        try:
            created, warnings = api.create_sweep(entity, project, text, config.get("description"))
        except WandbApiError as err:
            if not (err.transient and backoff.wait()):
                raise
            found = [s for s in api.sweeps(entity, project) if canonical(_load(s.get("config"))) == wanted]
            if found:
                return api.sweep(entity, project, found[0]["name"]) or found[0]
            continue
        for warning in warnings:
            module.warn(f"W&B warns about the sweep config: {warning}")
        fallback = {"name": created["name"], "id": created.get("id")}
        return api.sweep(entity, project, created["name"]) or fallback


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
    }

    if p["sweep_id"]:
        try:
            ref_entity, ref_project, name = split_sweep_ref(p["sweep_id"])
        except ValueError as err:
            module.fail_json(msg=str(err))
        entity, project = ref_entity or entity, ref_project or project
        if not project:
            module.fail_json(msg=f"sweep_id {p['sweep_id']!r} does not name a project: give project too")
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
        matches = [s for s in api.sweeps(entity, project) if canonical(_load(s.get("config"))) == wanted]
        sweep = matches[0] if matches else None
        if sweep is None and not p["create"]:
            module.fail_json(
                msg=f"no sweep in {entity}/{project} has this config: deploy it first, or set the sweep's ID"
            )
        if sweep is None:
            result["changed"] = True
            if module.check_mode:
                result["msg"] = f"would create a sweep in {entity}/{project}"
                return result
            text = yaml.safe_dump(fill_distributions(config), sort_keys=False)
            sweep = _create_once(api, entity, project, text, config, wanted, module)
            result["created"] = True

    name = sweep["name"]
    # What W&B answered is written into the agents' settings on every host: each part of the
    # path must be a name, not text that a hostile server or proxy chose.
    for what, part in (("entity", entity), ("sweep id", name)):
        pattern = SWEEP_NAME_RE if what == "sweep id" else ENTITY_RE
        if not (isinstance(part, str) and pattern.match(part)):
            module.fail_json(
                msg=f"the W&B API at {api.base_url} answered {part!r} as the {what}, not a name: refused"
            )
    if "runs" not in sweep:  # found in the project's list, which does not carry the runs
        sweep = api.sweep(entity, project, name) or sweep
    result.update(
        sweep_id=name,
        sweep_path=f"{entity}/{project}/{name}",
        url=f"{app_url(api.base_url)}/{entity}/{project}/sweeps/{name}",
        state=(sweep.get("state") or "RUNNING").upper(),
        **_progress(sweep),
    )

    target = TARGET.get(p["state"])
    if p["rerun"]:
        wanted_states = {state.lower() for state in p["rerun"]}
        redo = [r for r in sweep.get("runs") or [] if (r.get("state") or "").lower() in wanted_states]
        result["rerun_runs"] = sorted(r["name"] for r in redo)
        if redo:
            if result["state"] == "CANCELED":
                module.fail_json(
                    msg=f"sweep {result['sweep_path']}: {_allowed('CANCELED', 'RUNNING')}", **result
                )
            if target not in (None, "RUNNING"):
                module.fail_json(
                    msg="rerun resumes the sweep: do not ask for another state with it", **result
                )
            result["changed"] = True
            if not module.check_mode:
                for run_node in redo:
                    api.delete_run(run_node["id"])
                result.update(_progress(api.sweep(entity, project, name) or sweep))
            target = "RUNNING"
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
            "rerun": {
                "type": "list",
                "elements": "str",
                "default": [],
                "choices": ["crashed", "failed", "killed"],
            },
            "create": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 30},
            "retry_seconds": {"type": "int", "default": 120},
            "validate_certs": {"type": "bool", "default": True},
        },
        required_one_of=[("config", "sweep_id")],
        supports_check_mode=True,
    )
    if yaml is None:
        module.fail_json(msg=missing_required_lib("PyYAML"))
    try:
        module.exit_json(**run(module))
    except WandbApiError as err:
        module.fail_json(msg=str(err), status=err.status)


if __name__ == "__main__":
    main()
