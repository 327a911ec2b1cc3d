"""Generated documentation and declarations that must agree."""

from __future__ import annotations

import subprocess
import sys

import yaml
from ansible_collections.sweep_fleet.wandb.plugins.action import preflight

from support import REPO


def test_the_variable_reference_is_what_the_specs_say():
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "docs.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_the_playbooks_variables_are_the_ones_the_preflight_reads():
    specs = yaml.safe_load((REPO / "playbooks" / "vars" / "argument_specs.yml").read_text())
    assert tuple(specs["argument_specs"]["playbooks"]["options"]) == preflight.PLAYBOOK_VARIABLES


def test_every_test_module_has_its_own_name():
    # pytest imports test modules by basename (rootdir-relative, no packages): two
    # files of one name in different folders break collection of the whole suite.
    names = [path.name for path in (REPO / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
