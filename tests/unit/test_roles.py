"""Every role: defaults and argument_specs list the same variables, all with the role's prefix."""

from __future__ import annotations

import re

import pytest
import yaml

from support import REPO

ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())


def test_all_roles_are_checked():
    assert ROLES == ["wandb_agent", "wandb_code", "wandb_credentials", "wandb_runtime", "wandb_sweep"]


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
