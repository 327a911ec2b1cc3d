"""The serial step of a staged rolling update (the rollout action and module): the staged code
takes the code's place in one step, through its parent's descriptor, never through a link or
a directory that is not root's; the drain's waits; a staging that holds the units."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible.plugins.action import ActionBase
from ansible_collections.sweep_fleet.wandb.plugins.action.rollout import ActionModule as RolloutAction
from ansible_collections.sweep_fleet.wandb.plugins.filter.drain_calls import drain_calls
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import agent_units, rollout
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import UnsafePath

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the code is root's")
NOBODY = 65534


def tree(base: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    return base


def contents(base: Path) -> dict[str, str]:
    return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.fixture
def site(tmp_path):
    os.chmod(tmp_path, 0o755)
    code = tree(tmp_path / "code", {"main.py": "v1\n", "old.py": "gone\n", "pkg/a.py": "a1\n"})
    staged = tree(tmp_path / ".code.staged", {"main.py": "v2\n", "pkg/a.py": "a2\n", "new.py": "n\n"})
    return code, staged


@root_only
def test_the_staged_code_takes_the_codes_place_and_the_old_code_is_removed(site):
    code, staged = site
    assert rollout.switch_tree(str(code), str(staged))
    assert contents(code) == {"main.py": "v2\n", "new.py": "n\n", "pkg/a.py": "a2\n"}
    assert sorted(os.listdir(code.parent)) == ["code"]


@root_only
def test_two_renames_put_the_staged_code_in_place_where_names_cannot_be_exchanged(site, monkeypatch):
    def unsupported(*_args):
        raise OSError(errno.EINVAL, "not on this filesystem")

    monkeypatch.setattr(rollout, "_exchange", unsupported)
    code, staged = site
    assert rollout.switch_tree(str(code), str(staged) + "/")
    assert contents(code) == {"main.py": "v2\n", "new.py": "n\n", "pkg/a.py": "a2\n"}
    assert sorted(os.listdir(code.parent)) == ["code"]


@root_only
def test_nothing_staged_leaves_the_code_as_it_is(site):
    code, staged = site
    shutil.rmtree(staged)
    assert not rollout.switch_tree(str(code), str(staged))
    assert contents(code)["main.py"] == "v1\n"


@root_only
def test_staged_code_without_code_becomes_the_code(site):
    code, staged = site
    shutil.rmtree(code)
    assert rollout.switch_tree(str(code), str(staged))
    assert contents(code)["main.py"] == "v2\n"


@root_only
@pytest.mark.parametrize("where", ["staged", "code"])
def test_a_link_in_place_of_either_tree_is_refused_and_nothing_moves(site, tmp_path, where):
    code, staged = site
    elsewhere = tree(tmp_path / "elsewhere", {"main.py": "planted\n"})
    victim = staged if where == "staged" else code
    os.rename(victim, tmp_path / "moved")
    victim.symlink_to(elsewhere)
    with pytest.raises(UnsafePath):
        rollout.switch_tree(str(code), str(staged))
    assert victim.is_symlink() and contents(elsewhere) == {"main.py": "planted\n"}


@root_only
def test_a_staged_tree_that_is_not_roots_is_refused(site):
    code, staged = site
    os.chown(staged, NOBODY, NOBODY)
    with pytest.raises(UnsafePath):
        rollout.switch_tree(str(code), str(staged))
    assert contents(code)["main.py"] == "v1\n"


def test_a_staged_tree_elsewhere_than_beside_the_code_is_refused(site, tmp_path):
    code, _staged = site
    with pytest.raises(ValueError):
        rollout.switch_tree(str(code), str(tmp_path / "sub" / ".code.staged"))


@root_only
def test_removing_the_old_tree_follows_no_link_out_of_it(tmp_path):
    os.chmod(tmp_path, 0o755)
    outside = tree(tmp_path / "outside", {"keep.txt": "k\n"})
    old = tree(tmp_path / "old", {"a.py": "a\n"})
    (old / "link").symlink_to(outside)
    (old / "sub").mkdir()
    (old / "sub" / "link").symlink_to(outside / "keep.txt")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rollout.remove_tree(fd, "old")
    finally:
        os.close(fd)
    assert not old.exists() and contents(outside) == {"keep.txt": "k\n"}


@pytest.mark.parametrize(
    ("timeout", "waits"),
    [(900, [60] * 15), (61, [31, 31]), (60, [60]), (30, [30]), (0, [0])],
)
def test_the_drain_waits_in_calls_of_at_most_a_minute(timeout, waits):
    assert drain_calls(timeout) == waits
    assert sum(waits) >= timeout


class _NoSystemd:
    def run_command(self, argv):
        raise AssertionError(f"a held unit step ran {argv}")

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


def test_held_units_are_left_as_they_are():
    module = _NoSystemd()
    module.check_mode = False
    module.params = {
        **{name: spec.get("default") for name, spec in agent_units.ARGUMENT_SPEC.items()},
        "instances": ["1", "2"],
        "restart": ["1"],
        "reload": True,
        "hold": True,
    }
    result = agent_units.run(module)
    assert result["changed"] is False and result["started"] == result["restarted"] == []


def rollout_action(monkeypatch, answers: list[dict], **args):
    """The rollout action with the module's answers stood in; the calls it made."""
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    calls: list[dict] = []

    def execute(module_name, module_args, task_vars):
        assert module_name == "sweep_fleet.wandb.rollout"
        calls.append(module_args)
        return dict(answers[len(calls) - 1])

    action = object.__new__(RolloutAction)
    action._task = SimpleNamespace(args={"user": "wandb", "code": {}, "units": {}, "record": "/r", **args})
    action._execute_module = execute
    return action.run(task_vars={}), calls


def test_a_drain_asks_once_and_switches_in_the_call_that_sees_the_agents_end(monkeypatch):
    asked = [{"unit": "wandb-agent@1.service", "runs": [{"id": "a"}, {"id": "b"}]}]
    result, calls = rollout_action(
        monkeypatch,
        [
            {"done": False, "interrupted": asked, "drain_seconds": 60.1},
            {"done": True, "left": [{"id": "b"}], "switched": True, "drain_seconds": 12.4},
        ],
        drain_timeout=180,
    )
    assert result["drain_seconds"] == 72.5
    assert [(c["interrupt"], c["wait"], c["final"]) for c in calls] == [(True, 60, False), (False, 60, False)]
    assert result["drained"] == [{"id": "a"}] and result["preempted"] == [{"id": "b"}]
    assert result["switched"] and "done" not in result


def test_a_drain_that_outlasts_its_timeout_switches_in_its_last_call(monkeypatch):
    result, calls = rollout_action(
        monkeypatch, [{"done": False}, {"done": True, "left": [{"id": "c"}]}], drain_timeout=90
    )
    assert [(c["interrupt"], c["wait"], c["final"]) for c in calls] == [(True, 45, False), (False, 45, True)]
    assert result["preempted"] == [{"id": "c"}] and result["drained"] == []


def test_a_preempt_waits_for_nothing(monkeypatch):
    result, calls = rollout_action(monkeypatch, [{"done": True, "left": [{"id": "d"}]}], mode="preempt")
    assert [(c["interrupt"], c["wait"], c["final"]) for c in calls] == [(False, 0, True)]
    assert result["preempted"] == [{"id": "d"}]


def test_a_failed_call_ends_the_drain(monkeypatch):
    result, calls = rollout_action(monkeypatch, [{"failed": True, "msg": "no"}], drain_timeout=600)
    assert len(calls) == 1 and result["failed"]
