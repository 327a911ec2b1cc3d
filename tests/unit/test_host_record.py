"""The host's record of its last deploy: written once, matched while nothing changed, and
every change on the host (a file, a tree, an account) or in the desired state is drift."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sweep_fleet.wandb.plugins.action.desired_state import (
    NOT_DEPLOYED,
    VENV_CODE_OPTIONS,
    deployed_options,
    part_digests,
    requirements_digest,
    same_parts,
    tree_digest,
)
from ansible_collections.sweep_fleet.wandb.plugins.action.preflight import ROLE_ORDER
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import host_record
from ansible_collections.sweep_fleet.wandb.plugins.modules import host_state

from support import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the record is root's")


def run(check: bool = False, **args) -> dict:
    out = io.StringIO()
    with (
        patch_module_args({**args, "_ansible_check_mode": check}),
        contextlib.redirect_stdout(out),
        pytest.raises(SystemExit),
    ):
        host_state.main()
    return json.loads(out.getvalue())


SITE = Path("venv", "lib", "python3.11", "site-packages")


def rewrite_in_place(path: Path, text: str) -> None:
    """Change a file's bytes, keeping its size and modification time."""
    st = path.stat()
    path.write_text(path.read_text().replace("sha256=a", text))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def host(tmp_path):
    """A deployed host in miniature: a config file, a code tree with a cache, a venv tree."""
    os.chmod(tmp_path, 0o755)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "netrc").write_text("machine api.wandb.ai\n")
    code = tmp_path / "code"
    (code / "pkg" / "__pycache__").mkdir(parents=True)
    (code / "main.py").write_text("print('x')\n")
    (code / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_bytes(b"\x7fELF")
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("x = 1\n")
    (site / "pkg-1.0.dist-info").mkdir()
    (site / "pkg-1.0.dist-info" / "RECORD").write_text("pkg/__init__.py,sha256=a,6\n")
    spec = {
        "paths": [str(tmp_path / "etc"), str(tmp_path / "etc" / "netrc")],
        "trees": [{"path": str(code), "content": True}, {"path": str(tmp_path / "venv"), "packages": True}],
        "users": ["root"],
        "groups": ["root"],
    }
    record = str(tmp_path / "deploy-record.json")
    assert run(state="present", record=record, digest="d1", spec=spec)["changed"]
    return tmp_path, record


def read(record: str) -> dict:
    return run(record=record)["record"]


def test_a_host_as_recorded_has_no_drift_and_its_record_is_roots_alone(host):
    root, record = host
    assert read(record) == {"found": True, "digest": "d1", "drift": []}
    st = os.stat(record)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    # Python's caches come and go with the runs: not drift.
    (root / "code" / "pkg" / "__pycache__" / "n.pyc").write_bytes(b"\1")
    assert read(record)["drift"] == []


@pytest.mark.parametrize(
    "change, drift",
    [
        (lambda r: (r / "etc" / "netrc").write_text("machine other\n"), "path {root}/etc/netrc"),
        (lambda r: (r / "etc" / "netrc").unlink(), "path {root}/etc/netrc"),
        (lambda r: os.chmod(r / "etc", 0o777), "path {root}/etc"),
        (lambda r: (r / "code" / "main.py").write_text("print('y')\n"), "tree {root}/code"),
        (lambda r: (r / "code" / "new.py").write_text(""), "tree {root}/code"),
        (lambda r: os.utime(r / "venv" / "bin" / "python", (1, 1)), "tree {root}/venv"),
        (lambda r: (r / "venv" / "bin" / "python").unlink(), "tree {root}/venv"),
        # Same size and time, other hashes: a distribution's metadata is read for its content.
        (
            lambda r: rewrite_in_place(r / SITE / "pkg-1.0.dist-info" / "RECORD", "sha256=b"),
            "tree {root}/venv",
        ),
        (lambda r: shutil.rmtree(r / SITE / "pkg-1.0.dist-info"), "tree {root}/venv"),
        (lambda r: shutil.rmtree(r / SITE / "pkg"), "tree {root}/venv"),
        (lambda r: (r / SITE / "other.pth").write_text("/tmp\n"), "tree {root}/venv"),
    ],
    ids=[
        "file-edited",
        "file-removed",
        "mode-changed",
        "code-edited",
        "code-added",
        "venv-touched",
        "venv-file-gone",
        "venv-package-upgraded",
        "venv-package-uninstalled",
        "venv-package-directory-gone",
        "venv-path-file-added",
    ],
)
def test_a_change_on_the_host_is_drift_named_by_its_path(host, change, drift):
    root, record = host
    change(root)
    assert read(record)["drift"] == [drift.format(root=root)]


def test_a_venv_is_seen_as_its_installer_sees_it_not_file_by_file(host):
    """An edit inside an installed package is what ``uv pip install`` neither sees nor
    repairs: the record does not read the packages' files (a venv has thousands)."""
    root, record = host
    (root / SITE / "pkg" / "__init__.py").write_text("x = 2\n")
    (root / SITE / "pkg" / "new.py").write_text("")
    assert read(record)["drift"] == []


def test_an_account_or_a_unit_that_is_not_as_recorded_is_drift(tmp_path):
    os.chmod(tmp_path, 0o755)
    record = str(tmp_path / "r.json")
    spec = {"users": ["no-such-user-sf"], "units": {"sweep-fleet-no-such.service": "yes yes"}}
    run(state="present", record=record, digest="d", spec=spec)
    # Recorded as the deploy left them (the user made, the unit running); neither is so now.
    saved = json.loads(Path(record).read_text())["seen"]
    assert saved["unit sweep-fleet-no-such.service"] == "yes yes"
    assert read(record)["drift"] == ["unit sweep-fleet-no-such.service"]


@pytest.mark.parametrize("how", ["readable", "link", "not-root", "too-large", "not-json"])
def test_a_record_root_could_not_have_written_counts_as_none(host, how, tmp_path):
    root, record = host
    if how == "readable":
        os.chmod(record, 0o644)
    elif how == "link":
        os.rename(record, root / "elsewhere.json")
        os.symlink(root / "elsewhere.json", record)
    elif how == "not-root":
        os.chown(record, 65534, 65534)
    elif how == "too-large":
        with open(record, "a") as handle:
            handle.write(" " * host_record.RECORD_LIMIT)
    else:
        with open(record, "w") as handle:
            handle.write("{")
    assert read(record) == {"found": False, "digest": "", "drift": ["no record of a deploy"]}


# write_given: as the rollout's and the agents' calls write it.
@pytest.mark.parametrize("writer", ["write_given", "host_state"])
def test_a_deploy_of_the_code_alone_keeps_what_the_record_lists(host, tmp_path, writer):
    """The record of a deploy or update that changed only the code's content (keep_spec)
    holds the new digest and the record's own list of what it checks: a file that list
    holds is still checked; with no record to keep, none is written."""

    def write(**args) -> None:
        if writer == "write_given":
            host_record.write_given({"parts": {}, "spec": {}, "keep_spec": False, **args})
        else:
            run(state="present", **args)

    root, record = host
    (root / "code" / "main.py").write_text("print('v2')\n")
    write(record=record, digest="d2", parts={"settings": "s1"}, keep_spec=True)
    assert read(record) == {"found": True, "digest": "d2", "drift": [], "parts": {"settings": "s1"}}
    (root / "etc" / "netrc").write_text("machine other\n")
    assert read(record)["drift"] == [f"path {root}/etc/netrc"]
    gone = str(tmp_path / "none.json")
    write(record=gone, digest="d2", keep_spec=True)
    assert not os.path.exists(gone)
    write(record=gone, digest="d2", spec={"paths": [record]})
    assert json.loads(Path(gone).read_text())["spec"] == {"paths": [record]}


def test_check_mode_writes_and_removes_nothing(host, tmp_path):
    _root, record = host
    before = Path(record).read_text()
    assert run(check=True, state="present", record=record, digest="d2", spec={})["changed"]
    assert Path(record).read_text() == before
    assert run(check=True, state="absent", record=record)["changed"]
    assert os.path.exists(record)
    assert run(state="absent", record=record)["changed"]
    assert not os.path.exists(record)
    assert run(state="absent", record=record)["changed"] is False


def test_no_record_is_written_in_a_directory_others_can_change(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    out = run(state="present", record=str(shared / "r.json"), digest="d", spec={})
    assert out.get("failed") and "others can change" in out["msg"]
    assert not (shared / "r.json").exists()


def test_the_controllers_tree_digest_follows_names_modes_sizes_and_times_not_caches(tmp_path):
    (tmp_path / "a.py").write_text("a\n")
    (tmp_path / "__pycache__").mkdir()
    first = tree_digest(str(tmp_path))
    (tmp_path / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert tree_digest(str(tmp_path)) == first
    os.utime(tmp_path / "a.py", (time.time() + 5, time.time() + 5))
    touched = tree_digest(str(tmp_path))
    assert touched != first
    os.chmod(tmp_path / "a.py", 0o600)
    assert tree_digest(str(tmp_path)) != touched
    assert tree_digest(str(tmp_path / "missing")) == "missing"


def test_the_read_says_which_commands_the_host_has(tmp_path, monkeypatch):
    """The code role's tools are looked for in the same call (no command of their own)."""
    tool = tmp_path / "rsync"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    commands = run(commands=["rsync", "git"])["ansible_facts"]["sweep_fleet_commands"]
    assert commands == {"rsync": str(tool), "git": ""}


def test_how_agents_are_stopped_is_not_part_of_the_desired_state():
    """update.yml -e wandb_agent_stop_mode=preempt (or a drain timeout, a status file) must not
    make every host differ from its record: none of them is written to a host."""
    every = specs()
    names = deployed_options(every)
    assert not NOT_DEPLOYED & set(names)
    assert set(every["wandb_agent"]["main"]["options"]) >= NOT_DEPLOYED  # each name is a real option
    assert {
        "wandb_agent_count",
        "wandb_code_dest",
        "wandb_runtime_venv",
        "wandb_credentials_base_url",
    } <= set(names)


def test_the_record_keeps_the_parts_of_the_desired_state(host):
    """Written with the parts' digests, read back with them; a record from before parts
    existed is still a record (with none)."""
    root, record = host
    spec = {"paths": [str(root / "etc")]}
    run(state="present", record=record, digest="d2", spec=spec, parts={"venv": "v1"})
    assert read(record)["parts"] == {"venv": "v1"}
    data = json.loads(Path(record).read_text())
    del data["parts"]
    Path(record).write_text(json.dumps(data))
    assert read(record) == {"found": True, "digest": "d2", "drift": []}
    data["parts"] = ["venv"]
    Path(record).write_text(json.dumps(data))
    assert not read(record)["found"]


def specs() -> dict:
    return {
        role: yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"
        ]
        for role in ROLE_ORDER
    }


def test_the_venv_part_follows_the_runtime_and_the_requirements_not_the_code(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text("print(1)\n")
    (code / "requirements.txt").write_text("numpy==1.26\n")
    runtime_options = deployed_options({"wandb_runtime": specs()["wandb_runtime"]})
    values = {"wandb_runtime_venv": "/opt/sweep-fleet/venv", "wandb_code_venv": "/opt/sweep-fleet/venv"}
    candidates = ["requirements.txt", "pyproject.toml"]

    def venv(**changes) -> str:
        common = {"host": "h1", "facts": {}, "controller": {"code": tree_digest(str(code))}}
        requirements = requirements_digest(str(code), candidates)
        return part_digests("key", common, {**values, **changes}, runtime_options, requirements)["venv"]

    first = venv()
    (code / "main.py").write_text("print(2)\n")
    (code / "data.csv").write_text("a,b\n")
    assert venv() == first
    assert venv(wandb_runtime_venv="/srv/venv") != first
    assert venv(wandb_code_venv="/srv/venv") != first
    (code / "requirements.txt").write_text("numpy==1.26.4\n")
    assert venv() != first
    assert requirements_digest(str(code), candidates) != requirements_digest(str(code), ["requirements.txt"])


def test_the_settings_part_follows_everything_but_the_local_codes_files(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text("print(1)\n")
    (code / "requirements.txt").write_text("numpy==1.26\n")
    values = {"wandb_agent_count": 2, "wandb_sweep_path": "e/p/s1"}

    def settings(controller: dict | None = None, facts: dict | None = None, **changes) -> str:
        common = {
            "host": "h1",
            "facts": facts or {},
            "collection": "c1",
            "controller": {"code": tree_digest(str(code)), **(controller or {})},
        }
        requirements = requirements_digest(str(code), ["requirements.txt"])
        return part_digests("key", common, {**values, **changes}, [], requirements)["settings"]

    first = settings()
    (code / "main.py").write_text("print(2)\n")
    (code / "requirements.txt").write_text("numpy==1.26.4\n")
    assert settings() == first
    assert settings(wandb_agent_count=3) != first
    assert settings(wandb_sweep_path="e/p/s2") != first
    assert settings(controller={"uv": "u2"}) != first
    assert settings(controller={"extra /data": "x"}) != first
    assert settings(facts={"os_family": "Debian"}) != first


def test_a_part_is_as_recorded_only_on_a_host_that_has_not_drifted():
    parts = {"venv": "v1"}
    assert same_parts({"found": True, "parts": {"venv": "v1"}, "drift": []}, parts, True) == ["venv"]
    assert same_parts({"found": True, "parts": {"venv": "v0"}, "drift": []}, parts, True) == []
    assert same_parts({"found": True, "parts": {"venv": "v1"}, "drift": ["path /etc/x"]}, parts, True) == []
    assert same_parts({"found": True, "parts": {}, "drift": []}, parts, True) == []
    assert same_parts({"found": False, "parts": {"venv": "v1"}}, parts, True) == []


def test_the_venv_is_never_as_recorded_for_code_from_git():
    """The checkout's requirement files are not among the venv part's inputs."""
    parts = {"venv": "v1", "settings": "s1"}
    recorded = {"found": True, "parts": dict(parts), "drift": []}
    assert same_parts(recorded, parts, True) == ["settings", "venv"]
    assert same_parts(recorded, parts, False) == ["settings"]


def code_role_names(text: str, seen: set[str]) -> set[str]:
    """The code role's options a template text reads, through the code role's own variables."""
    role_vars = yaml.safe_load((REPO / "roles" / "wandb_code" / "vars" / "main.yml").read_text())
    found = set()
    for name in set(re.findall(r"\b(_*wandb_code_[a-z_]+)", text)) - seen:
        seen.add(name)
        if name.startswith("__"):
            found |= code_role_names(str(role_vars.get(name, "")), seen)
        else:
            found.add(name)
    return found


def test_the_venv_part_covers_what_the_venv_follows_of_the_code_role():
    """What the runtime role reads of the code role, and what the install of the code's
    requirements follows, is in the venv part: a change to any of them asks the venv again."""
    runtime = REPO / "roles" / "wandb_runtime"
    texts = [
        f.read_text() for d in ("tasks", "vars", "defaults") for f in sorted((runtime / d).glob("*.yml"))
    ]
    tasks = yaml.safe_load((REPO / "roles" / "wandb_code" / "tasks" / "deploy_linux.yml").read_text())
    (install,) = [t for t in tasks if t["name"] == "Install the code's requirements into the venv"]
    install_args = yaml.safe_dump(install["sweep_fleet.wandb.venv"])
    names = code_role_names("\n".join([*texts, install_args]), set())
    assert "wandb_code_requirements" in names and "wandb_code_constraints" in names
    assert names <= set(VENV_CODE_OPTIONS), names - set(VENV_CODE_OPTIONS)
    options = specs()["wandb_code"]["main"]["options"]
    assert set(VENV_CODE_OPTIONS) <= set(options)
