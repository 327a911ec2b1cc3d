"""Every role: defaults and argument_specs list the same variables, all with the role's prefix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from support import REPO

ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())


def test_all_roles_are_checked():
    assert ROLES == [
        "wandb_agent",
        "wandb_code",
        "wandb_credentials",
        "wandb_runtime",
        "wandb_slurm",
        "wandb_sweep",
    ]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)
    for name, spec in options.items():
        assert name.startswith(role + "_"), name
        assert spec.get("description"), f"{name} has no description"
        assert "type" in spec, f"{name} has no type"
        assert spec.get("default") == defaults[name], f"{name}: default differs from defaults/main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_internal_names_are_prefixed(role):
    text = "".join(p.read_text() for p in (REPO / "roles" / role).rglob("*.yml"))
    for name in re.findall(r"register: (\S+)", text):
        assert name.startswith(f"__{role}_"), name
    for name in re.findall(r"^\s{4}(__\w+):", text, re.MULTILINE):
        assert name.startswith(f"__{role}_"), name


def test_readme_names_every_role():
    readme = (REPO / "README.md").read_text()
    for role in ROLES:
        assert f"`{role}`" in readme


def _defaults(roles: list[str]) -> dict:
    merged = {}
    for role in roles:
        merged.update(yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()) or {})
    return merged


def _render(name: str, context: dict, depth: int = 0):
    """A default's value, its templates resolved against ``context`` (missing names: undefined)."""
    import jinja2

    value = context[name]
    if not isinstance(value, str) or "{{" not in value or depth > 10:
        return value

    class Variables(dict):
        def __missing__(self, key):
            if key in context:
                return _render(key, context, depth + 1)
            raise KeyError(key)

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["default"] = lambda v, d=None, _b=False: d if isinstance(v, jinja2.Undefined) else v
    variables = Variables()

    def resolve(expr_name):
        try:
            return variables[expr_name]
        except KeyError:
            return jinja2.StrictUndefined(name=expr_name)

    template = env.from_string(value)
    names = jinja2.meta.find_undeclared_variables(env.parse(value))
    return template.render({n: resolve(n) for n in names} | {"lookup": lambda *a, **k: ""})


CROSS_ROLE = re.compile(r"\{\{\s*(wandb_[a-z]+)_")


@pytest.mark.parametrize("role", ROLES)
def test_cross_role_fallbacks_equal_the_other_roles_defaults(role):
    """A role's default that falls back for another role's variable gives that role's own default."""
    import jinja2
    import jinja2.meta

    own = _defaults([role])
    everything = _defaults(ROLES)
    for name, value in own.items():
        if not isinstance(value, str) or not any(m != role for m in CROSS_ROLE.findall(value)):
            continue
        if "default(" not in value:
            continue  # used only where the other role is loaded too (deploy, update, remove)
        try:
            alone = _render(name, own)
        except jinja2.UndefinedError:
            continue  # its fallback names the other role too: used only beside it
        together = _render(name, everything)
        assert alone == together, f"{name}: {alone!r} alone, {together!r} beside the other roles"


def test_the_controllers_tools_pin_what_the_hosts_get():
    """The runtime role's defaults are the one source; pyproject.toml and uv.lock must agree."""
    import tomllib

    from support import VERSIONS

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = dict(p.split("==") for p in project["dependency-groups"]["dev"] if "==" in p)
    assert pins["uv"] == VERSIONS["wandb_runtime_uv_version"]
    assert pins["wandb"] == VERSIONS["wandb_runtime_wandb_version"]
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (uv,) = [p for p in lock["package"] if p["name"] == "uv"]
    assert uv["version"] == VERSIONS["wandb_runtime_uv_version"]
    wheels = {w["url"].rsplit("/", 1)[1]: w["hash"].removeprefix("sha256:") for w in uv["wheels"]}
    for arch, sha256 in VERSIONS["wandb_runtime_uv_sha256"].items():
        name = f"uv-{uv['version']}-py3-none-" + (
            "win_amd64" if arch == "win_amd64" else f"manylinux_2_17_{arch}.manylinux2014_{arch}"
        )
        (locked,) = [h for w, h in wheels.items() if w.startswith(name)]
        assert locked == sha256, arch


def _imports(tasks: list, base: Path) -> list[dict]:
    """Every import_role in a list of tasks, through blocks and imported or included task files
    (each found beside the file that names it)."""
    found = []
    for task in tasks or []:
        for key in ("block", "rescue", "always"):
            found += _imports(task.get(key), base)
        if "ansible.builtin.import_role" in task:
            found.append(task["ansible.builtin.import_role"])
        for key in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
            if key in task:
                path = base / task[key]
                found += _imports(yaml.safe_load(path.read_text()), path.parent)
    return found


@pytest.mark.parametrize("playbook", sorted(p.name for p in (REPO / "playbooks").glob("*.yml")))
def test_a_role_imported_unchecked_had_its_arguments_checked_by_the_preflight(playbook):
    """rolespec_validate: false leaves out a role's own check of its arguments: only where the
    playbook's preflight checked every option of that entry point (the same specs) before."""
    plays = yaml.safe_load((REPO / "playbooks" / playbook).read_text())
    checks = [
        str(entry)
        for play in plays
        if play.get("ansible.builtin.import_playbook") == "preflight.yml"
        for entry in play["vars"]["sweep_fleet_checks"]
    ]
    unchecked = [
        role
        for play in plays
        for role in _imports(play.get("pre_tasks", []) + play.get("tasks", []), REPO / "playbooks")
        if role.get("rolespec_validate") is False
    ]
    for role in unchecked:
        entry = role.get("tasks_from", "main")
        specs = yaml.safe_load((REPO / "roles" / role["name"] / "meta" / "argument_specs.yml").read_text())
        wanted = specs["argument_specs"][entry]["options"]
        checked: dict = {}
        for name in checks:
            checked_role, _, checked_entry = name.partition(":")
            if checked_role == role["name"]:
                checked |= specs["argument_specs"][checked_entry or "main"]["options"]
        assert {k: checked.get(k) for k in wanted} == wanted, (playbook, role, checks)
