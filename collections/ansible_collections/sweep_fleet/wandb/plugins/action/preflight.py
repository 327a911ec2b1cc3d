# Copyright: sweep-fleet developers
# Apache License 2.0
"""Check sweep-fleet's inputs on the controller, before any host is touched.

See the module documentation in plugins/modules/preflight.py. Three steps, each on the
controller only (no host is contacted):

* ``roles: [...]`` (per host): every variable of those roles, with the roles' defaults
  under the host's own values, checked against the roles' ``meta/argument_specs.yml``
  (types, choices) and against the rules of ``module_utils/inputs.py``; the sweep config is
  rendered and checked too. With ``collect: true`` the problems are returned, else the
  task fails with them.
* ``platform: true`` (per host, after fact gathering): whether the host can run agents.
* ``report: NAME`` (once): gathers what the per-host steps registered as NAME on every
  host, checks the package index for the pinned versions, and fails with one short
  message per problem, naming the hosts it applies to when not all.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import ArgumentTypeError, ArgumentValueError, RequiredError
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import inputs
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.pypi_index import redacted

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
# The playbooks' own variables (documented in the repository's playbooks/vars/argument_specs.yml).
ROLE_ORDER = ("wandb_runtime", "wandb_credentials", "wandb_code", "wandb_sweep", "wandb_agent", "wandb_slurm")
# The inventory group of SLURM login nodes: their agents are a job array (the wandb_slurm role).
SLURM_GROUP = "slurm_login"
# A deploy converges these roles; it leaves a record of that in the runtime's state directory.
DEPLOY_ROLES = ("wandb_runtime", "wandb_credentials", "wandb_code", "wandb_agent")
RECORD_NAME = "deploy-record.json"
PLAYBOOK_VARIABLES = ("sweep_fleet_hosts", "sweep_fleet_serial")
TYPE_WORDS = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
    "path": "a path",
    "raw": "a value",
}


def describe(spec: dict) -> str:
    kind = spec.get("type", "str")
    words = TYPE_WORDS.get(kind, kind)
    if kind == "list" and spec.get("elements") == "dict" and spec.get("options"):
        words += " of mappings with " + " and ".join(spec["options"])
    elif kind == "list" and spec.get("elements"):
        words += " of " + {"str": "strings", "int": "whole numbers"}.get(spec["elements"], spec["elements"])
    return words


def shown(spec: dict, value) -> str:
    if spec.get("no_log"):
        return "a hidden value"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def spec_problems(name: str, spec: dict, value) -> list[str]:
    """Type and choice problems of one variable, in our words."""
    if spec.get("type", "str") == "str" and isinstance(value, float):
        return [
            f"{name} is the number {value}, but it is text: YAML reads an unquoted 3.10 as 3.1 "
            f'and 0.30 as 0.3; quote it, e.g. {name}: "{value}"'
        ]
    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    problems = []
    for error in result.errors:
        if isinstance(error, ArgumentValueError) and spec.get("choices"):
            choices = ", ".join(str(c) if c != "" else "''" for c in spec["choices"])
            problems.append(f"{name} must be one of {choices} (got {shown(spec, value)})")
        elif isinstance(error, ArgumentTypeError):
            problems.append(f"{name} must be {describe(spec)} (got {shown(spec, value)})")
        elif isinstance(error, RequiredError) and spec.get("options"):
            needed = [key for key, sub in spec["options"].items() if sub.get("required")]
            problems.append(f"{name}: each entry needs {' and '.join(needed)} (got {shown(spec, value)})")
        else:
            message = str(error).replace(f"argument '{name}'", name)
            problems.append(f"{name}: {message}" if not message.startswith(name) else message)
    return problems


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        if args.get("report"):
            return self._report(result, args["report"], task_vars)
        if args.get("platform"):
            facts = task_vars.get("ansible_facts") or {}
            values = self._values(inputs.PLATFORM_VARIABLES, task_vars)
            runs_agents = bool(
                {"wandb_agent", "wandb_agent:start"} & {str(r) for r in args.get("roles") or []}
            )
            if SLURM_GROUP in (task_vars.get("group_names") or []):
                probe = args.get("slurm_probe") if isinstance(args.get("slurm_probe"), dict) else {}
                problems = [inputs.slurm_login_problem(facts, probe)]
            else:
                problems = [inputs.platform_problem(facts, values, runs_agents=runs_agents)]
            if args.get("sweep_command"):
                problems.append(inputs.command_problem(list(args["sweep_command"]), facts))
            if isinstance(args.get("windows_python"), dict) and "rc" in args["windows_python"]:
                probe = args["windows_python"]
                problems.append(
                    inputs.windows_python_problem(
                        values.get("wandb_runtime_windows_python"),
                        probe["rc"],
                        str(probe.get("stdout") or ""),
                    )
                )
            if isinstance(args.get("gpu_probe"), dict) and not args["gpu_probe"].get("skipped"):
                gpu = self._values(inputs.GPU_VARIABLES, task_vars)
                try:  # its type was checked with the inputs; -e gives it as text
                    per_agent = max(int(gpu["wandb_agent_gpus_per_agent"] or 1), 1)
                except (TypeError, ValueError):
                    per_agent = 1
                plan, problem = inputs.gpu_plan(
                    gpu["wandb_agent_gpus"],
                    per_agent,
                    gpu["wandb_agent_gpus_missing"],
                    args["gpu_probe"],
                )
                problems.append(problem)
                # The roles pin each agent to these GPUs (playbooks/preflight.yml read them).
                result.setdefault("ansible_facts", {})["wandb_agent_gpu_plan"] = plan
            # The roles skip their own input check (the same one) for the rest of the run; a
            # problem stops the run at the report that follows.
            result.setdefault("ansible_facts", {})["sweep_fleet_checked"] = True
            result.update(changed=False, problems=[p for p in problems if p], index_checks=[])
            return self._finish(result, bool(args.get("collect")))
        entries = dict(str(r).partition(":")[::2] for r in args.get("roles") or [])
        unknown = [r for r in entries if r not in ROLE_ORDER]
        if unknown:
            raise AnsibleError(f"preflight: unknown roles {unknown} (known: {', '.join(ROLE_ORDER)})")
        entries = {role: entry or "main" for role, entry in entries.items()}
        if SLURM_GROUP not in (task_vars.get("group_names") or []):
            entries.pop("wandb_slurm", None)  # its inputs matter for login nodes only
        problems, checks, command = self._check(entries, list(args.get("require") or []), task_vars)
        result.update(changed=False, problems=problems, index_checks=checks, sweep_command=command)
        if entries.get("wandb_agent") in ("main", "start"):  # GPUs the hosts tell
            result["gpus_wanted"] = bool(
                self._values(("wandb_agent_gpus",), task_vars).get("wandb_agent_gpus")
            )
        if all(entries.get(role) == "main" for role in DEPLOY_ROLES):  # a deploy: its record
            state_dir = self._values(("wandb_runtime_state_dir",), task_vars).get("wandb_runtime_state_dir")
            if state_dir:
                result["record"] = os.path.join(str(state_dir), RECORD_NAME)
        if "wandb_runtime" in entries:  # Windows hosts' Python, whose version the hosts tell
            result["windows_python"] = self._values(("wandb_runtime_windows_python",), task_vars).get(
                "wandb_runtime_windows_python"
            )
        return self._finish(result, bool(args.get("collect")))

    def _finish(self, result: dict, collect: bool) -> dict:
        if result["problems"] and not collect:
            result["failed"] = True
            result["msg"] = "\n".join(result.pop("problems"))
        return result

    # -- the inputs of one host ------------------------------------------------------
    def _role_files(self, role: str) -> tuple[dict, dict]:
        # Parsed once per task and never copied (unsafe: the loader's cache itself), so these
        # are read, never changed.
        specs_file = str(ROLES_DIR / role / "meta" / "argument_specs.yml")
        specs = self._loader.load_from_file(specs_file, unsafe=True)
        # The roles' own defaults are templates, as Ansible takes them when a play has the role
        # (a playbook that does not list a role must still see them rendered).
        defaults_file = str(ROLES_DIR / role / "defaults" / "main.yml")
        defaults = self._loader.load_from_file(defaults_file, unsafe=True, trusted_as_template=True) or {}
        return specs["argument_specs"], defaults

    def _values(self, names: tuple[str, ...], task_vars: dict) -> dict:
        """Those variables' values for this host, with the roles' defaults under them
        (None for one that cannot be worked out: the input check named it already)."""
        variables: dict = {}
        for role in ROLE_ORDER:
            variables.update(self._role_files(role)[1])
        variables.update(task_vars)
        templar = self._templar.copy_with_new_env(available_variables=variables)
        values = {}
        for name in names:
            try:
                values[name] = templar.template(variables[name]) if name in variables else None
            except AnsibleError:
                values[name] = None
        return values

    def _check(
        self, entries: dict, required: list[str], task_vars: dict
    ) -> tuple[list[str], list[dict], list | None]:
        every_default: dict = {}
        options: dict = {}
        for role in ROLE_ORDER:
            specs, defaults = self._role_files(role)
            every_default.update(defaults)
            if role in entries:
                if entries[role] not in specs:
                    raise AnsibleError(f"preflight: {role} has no entry point {entries[role]}")
                options.update(specs[entries[role]]["options"])
        roles = list(entries)
        variables = {**every_default, **task_vars}
        templar = self._templar.copy_with_new_env(available_variables=variables)
        problems: list[str] = []
        values: dict = {}
        for name, spec in options.items():
            try:
                raw = templar.template(variables[name]) if name in variables else None
            except AnsibleError as err:
                problems.append(f"{name} cannot be worked out: {err.message.splitlines()[0]}")
                continue
            found = spec_problems(name, spec, raw)
            if found:
                problems += found
                continue
            converted = ArgumentSpecValidator({name: spec}).validate({name: raw}).validated_parameters
            values[name] = converted.get(name, raw)
        for name in PLAYBOOK_VARIABLES:
            if name in task_vars:
                values[name] = templar.template(task_vars[name])
        for name in required:
            if not values.get(name):
                choices = options.get(name, {}).get("choices")
                hint = "|".join(c for c in choices or [] if c) or "VALUE"
                problems.append(f"{name} is required here: give it with -e {name}={hint}")
        problems += inputs.problems(roles, values, inputs.Controller())
        command = None
        if "wandb_sweep" in roles and not values.get("wandb_sweep_id") and "wandb_sweep_template" in values:
            found, config = self._sweep_config(roles, values, variables)
            problems += found
            if isinstance(config, dict) and isinstance(config.get("command"), list):
                command = [str(part) for part in config["command"]]
        checks = []
        if "wandb_runtime" in roles and values.get("wandb_runtime_index_url"):
            checks.append(
                {
                    "variable": "wandb_runtime_wandb_version",
                    "index": values["wandb_runtime_index_url"],
                    "package": "wandb",
                    "version": values.get("wandb_runtime_wandb_version"),
                }
            )
            if values.get("wandb_runtime_uv_source") == "pypi":
                checks.append(
                    {
                        "variable": "wandb_runtime_uv_version",
                        "index": values["wandb_runtime_index_url"],
                        "package": "uv",
                        "version": values.get("wandb_runtime_uv_version"),
                    }
                )
            elif values.get("wandb_runtime_uv_source") == "controller":
                problem = self._controller_uv(values)
                if problem:
                    problems.append(problem)
        return problems, checks, command

    def _controller_uv(self, values: dict) -> str | None:
        path = values.get("wandb_runtime_uv_controller_path")
        if not path or not os.access(path, os.X_OK):
            return None  # the rules said so already
        try:
            out = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except OSError:
            return None
        version = [*out.split(), "", ""][1]
        if version != values.get("wandb_runtime_uv_version"):
            return (
                f"wandb_runtime_uv_controller_path is uv {version or '(unknown)'}, not the pinned "
                f"wandb_runtime_uv_version {values.get('wandb_runtime_uv_version')}: point it at uv "
                f"{values.get('wandb_runtime_uv_version')}, or change the pin"
            )
        return None

    def _sweep_config(self, roles: list[str], values: dict, variables: dict) -> tuple[list[str], object]:
        """The problems of the rendered sweep config, and the config (None if it did not render)."""
        template = values["wandb_sweep_template"]
        sweep_role = ROLES_DIR / "wandb_sweep"
        playbook_dir = variables.get("playbook_dir") or os.getcwd()
        search = [str(sweep_role), playbook_dir, os.getcwd()]
        found = template if os.path.isabs(template) else None
        for base in search if not found else []:
            for candidate in (Path(base) / "templates" / template, Path(base) / template):
                if candidate.is_file():
                    found = str(candidate)
                    break
            if found:
                break
        if not found or not os.path.isfile(found):
            return [
                f"wandb_sweep_template {template!r} is not a file on the controller: give an absolute "
                'path, e.g. "{{ inventory_dir }}/sweep.yaml.j2"'
            ], None
        lookup = lookup_loader.get("ansible.builtin.template", loader=self._loader, templar=self._templar)
        try:
            text = lookup.run([found], variables={**variables, "ansible_search_path": search})[0]
        except AnsibleError as err:
            return [
                f"wandb_sweep_template {template!r} cannot be rendered: {err.message.splitlines()[0]}"
            ], None
        try:
            config = yaml.safe_load(str(text))
        except yaml.YAMLError as err:
            return [
                f"wandb_sweep_template {template!r} does not render to YAML: {str(err).splitlines()[0]}"
            ], None
        default_template = template == "sweep.yaml.j2"
        problems = list(inputs.sweep_config_rules(config, default_template))
        if isinstance(config, dict):
            if not (values.get("wandb_sweep_project") or config.get("project")):
                problems.append(
                    "wandb_sweep_project is required: the W&B project the sweep and its runs go to "
                    "(or join an existing sweep with wandb_sweep_id)"
                )
            if "wandb_code" in roles:
                problems += inputs.deploy_rules(inputs.Values(values, inputs.Controller()), config)
        return problems, config

    # -- every host's problems, once ---------------------------------------------------
    def _report(self, result: dict, registered: str, task_vars: dict) -> dict:
        hosts = list(task_vars.get("ansible_play_hosts") or [])
        hostvars = task_vars.get("hostvars") or {}
        by_problem: dict[str, list[str]] = {}
        checks: list[dict] = []
        for host in hosts:
            outcome = hostvars[host].get(registered) or {}
            for problem in outcome.get("problems") or []:
                by_problem.setdefault(problem, []).append(host)
            for check in outcome.get("index_checks") or []:
                if check not in checks:
                    checks.append(check)
        lines = []
        for problem, where in by_problem.items():
            if len(where) < len(hosts) or registered.endswith("platform"):
                names = ", ".join(where[:5]) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
                problem = (
                    f"{names}: {problem}" if registered.endswith("platform") else f"{problem} (on {names})"
                )
            lines.append(problem)
        lines += self._index_problems(checks)
        if lines:
            result.update(failed=True, msg="\n".join(lines))
        else:
            result.update(changed=False, msg=f"every input and host is fine ({len(hosts)} hosts)")
        return result

    def _index_problems(self, checks: list[dict]) -> list[str]:
        problems = []
        releases: dict[tuple[str, str], set | None] = {}
        for check in checks:
            key = (check["index"], check["package"])
            if key not in releases:
                releases[key] = self._releases(*key)
            known = releases[key]
            if known is not None and check["version"] not in known:
                problems.append(
                    f"{check['variable']} {check['version']} does not exist at {redacted(check['index'])}: "
                    f"{check['package']}'s releases there go up to {_newest(known)}"
                )
        return problems

    @staticmethod
    def _releases(index: str, package: str) -> set | None:
        """The versions the index has (None when the controller cannot ask it)."""
        url = index.rstrip("/") + f"/{package}/"
        try:
            response = open_url(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=20)
            payload = json.loads(response.read())
        except Exception:
            return None
        if payload.get("versions"):
            return set(payload["versions"])
        names = [f.get("filename", "") for f in payload.get("files", [])]
        found = set()
        for name in names:
            parts = name.split("-")
            if len(parts) > 1 and parts[0].replace("_", "-").lower() == package:
                found.add(parts[1].removesuffix(".tar.gz").removesuffix(".zip"))
        return found or None


def _newest(versions: set) -> str:
    def key(version: str):
        return [int(p) if p.isdigit() else -1 for p in version.replace("-", ".").split(".")]

    stable = [v for v in versions if all(p.isdigit() for p in v.split("."))]
    return max(stable or versions, key=key)
