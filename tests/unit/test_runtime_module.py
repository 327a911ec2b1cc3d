"""The runtime module: the wandb_runtime role's steps in one call; a file from the controller
sent only to a host whose copy differs and checked again there; secrets kept out of output."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleActionFail
from ansible.module_utils.testing import patch_module_args
from ansible.plugins.action import ActionBase
from ansible_collections.sweep_fleet.wandb.plugins.action.runtime import ActionModule as RuntimeAction
from ansible_collections.sweep_fleet.wandb.plugins.modules import runtime
from pypi_stub import make_wheel

from support import REPO

UV = REPO / ".tools" / "bin" / "uv"
PROXY_PASSWORD = "pr0xy-" + "p" * 30


def run(check: bool = False, **args) -> tuple[dict, str]:
    out = io.StringIO()
    with (
        patch_module_args({**args, "_ansible_check_mode": check}),
        contextlib.redirect_stdout(out),
        pytest.raises(SystemExit),
    ):
        runtime.main()
    return json.loads(out.getvalue()), out.getvalue()


def copy(dest, data: bytes, staged=None, mode: str = "0755") -> dict:
    item = {"dest": str(dest), "mode": mode, "sha256": hashlib.sha256(data).hexdigest()}
    return item | ({"staged": str(staged)} if staged else {})


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "sweep-fleet" in p.name)


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the files are root's: the module sets their owner")


def test_a_file_from_the_controller_is_sent_only_to_a_host_whose_copy_differs(tmp_path):
    data, dest, staged = b"\x7fELF uv 0.13.8", tmp_path / "bin" / "uv", tmp_path / "sent"
    staged.write_bytes(data)
    # Missing: the host asks for it, and nothing else is done in that call.
    result, _ = run(copies=[copy(dest, data)], directories=[str(tmp_path / "home")])
    assert result["needs_staged"] == [str(dest)] and not result["changed"]
    assert not (tmp_path / "home").exists()
    # Sent: written as root's, mode 0755, with the other steps in the same call.
    result, _ = run(copies=[copy(dest, data, staged)], directories=[str(tmp_path / "home")])
    assert result["changed_steps"] == ["copies", "directories"], result
    assert dest.read_bytes() == data
    st = dest.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o755)
    # The same: no change, nothing asked for.
    result, _ = run(copies=[copy(dest, data)])
    assert result["changed"] is False and "needs_staged" not in result
    # A mode changed by hand is set back without a transfer.
    dest.chmod(0o700)
    result, _ = run(copies=[copy(dest, data)])
    assert result["changed_steps"] == ["copies"] and stat.S_IMODE(dest.stat().st_mode) == 0o755
    # Other content: asked for again.
    dest.write_bytes(b"another uv")
    result, _ = run(copies=[copy(dest, data)])
    assert result["needs_staged"] == [str(dest)]
    assert leftovers(dest.parent) == []


def test_a_sent_file_that_is_not_the_controllers_is_refused(tmp_path):
    data, dest, staged = b"uv as the controller has it", tmp_path / "uv", tmp_path / "sent"
    staged.write_bytes(b"uv swapped on the way")
    result, _ = run(copies=[copy(dest, data, staged)])
    assert result["failed"] and "not the controller's" in result["msg"]
    assert not dest.exists() and leftovers(tmp_path) == []
    # A link where the sent file should be is not followed.
    (tmp_path / "elsewhere").write_bytes(data)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    result, _ = run(copies=[copy(dest, data, tmp_path / "link")])
    assert result["failed"] and "cannot be read" in result["msg"] and not dest.exists()


def test_a_link_where_the_file_goes_is_refused_not_followed(tmp_path):
    data = b"uv"
    (tmp_path / "target").write_bytes(b"root's file")
    (tmp_path / "uv").symlink_to(tmp_path / "target")
    (tmp_path / "sent").write_bytes(data)
    result, _ = run(copies=[copy(tmp_path / "uv", data, tmp_path / "sent")])
    assert result["failed"] and "not a regular file" in result["msg"]
    assert (tmp_path / "target").read_bytes() == b"root's file"


def test_check_mode_sends_nothing_and_changes_nothing(tmp_path):
    dest = tmp_path / "new" / "uv"
    result, _ = run(check=True, copies=[copy(dest, b"uv")], directories=[str(tmp_path / "home")])
    assert result["changed_steps"] == ["copies", "directories"] and "needs_staged" not in result
    assert not dest.parent.exists() and not (tmp_path / "home").exists()


def test_the_environment_stays_secret_and_uvs_settings_stay_readable(tmp_path):
    """A proxy password given in environment is in no output; the settings (a "1" among
    them) mask nothing: a path with a 1 in it reads as it is."""
    home = str(tmp_path / "home1")
    result, raw = run(
        directories=[home],
        venv={"path": str(tmp_path / "venv"), "python": sys.executable, "uv": str(UV)},
        environment={"HTTPS_PROXY": f"http://user:{PROXY_PASSWORD}@127.0.0.1:9"},
        settings={
            "UV_SYSTEM_CERTS": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_CACHE_DIR": str(tmp_path / "c"),
        },
    )
    assert result["changed_steps"] == ["directories", "venv"], result
    assert result["venv"]["created"] and (tmp_path / "venv" / "bin" / "python").exists()
    assert result["directories"]["paths"] == [home]
    assert result["invocation"]["module_args"]["settings"]["UV_SYSTEM_CERTS"] == "1"
    assert PROXY_PASSWORD not in raw


def test_a_steps_own_environment_is_refused(tmp_path):
    result, raw = run(venv={"path": str(tmp_path / "venv"), "environment": {"HTTPS_PROXY": PROXY_PASSWORD}})
    assert result["failed"] and "give environment at the top level" in result["msg"]
    assert not (tmp_path / "venv").exists() and PROXY_PASSWORD not in raw


def test_a_step_is_checked_against_its_modules_argument_spec(tmp_path):
    result, _ = run(venv={"path": str(tmp_path / "venv"), "pakages": ["wandb"]})
    assert result["failed"] and result["msg"].startswith("venv: ") and "pakages" in result["msg"]
    result, _ = run(copies=[copy(tmp_path / "uv", b"uv")], wheelhouse={"dest": str(tmp_path / "w.tar")})
    assert result["failed"] and "handled by the action plugin" in result["msg"]


def run_action(monkeypatch, tmp_path, answers: list[dict], check: bool = False, **args) -> tuple[dict, list]:
    """The runtime action with uv from the controller, its calls to the host answered by
    ``answers`` in turn; what it did, in order: the calls (with the copies they carried),
    the temporary directory made, the files sent."""
    monkeypatch.setattr(ActionBase, "run", lambda self, tmp=None, task_vars=None: {})
    uv = tmp_path / "uv"
    uv.write_bytes(b"uv from the controller")
    events: list = []

    def execute(module_name, module_args, task_vars):
        events.append(("call", [dict(item) for item in module_args["copies"]], module_args))
        return answers.pop(0)

    action = object.__new__(RuntimeAction)
    action._task = SimpleNamespace(args={"uv_copy": {"src": str(uv)}, **args}, check_mode=check)
    action._execute_module = execute
    action._loader = SimpleNamespace(get_real_file=lambda path: path)
    action._find_needle = lambda kind, src: src
    action._connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None, join_path=os.path.join))
    action._make_tmp_path = lambda: events.append(("tmp",)) or "/remote/tmp"
    action._transfer_file = lambda src, dest: events.append(("send", src, dest))
    action._fixup_perms2 = lambda paths: None
    action._remove_tmp_path = lambda path: None
    return action.run(task_vars={}), events


SENT = "/remote/tmp/file0"


def test_a_host_is_asked_first_and_sent_only_the_files_its_copy_of_differs(monkeypatch, tmp_path):
    result, events = run_action(
        monkeypatch, tmp_path, [{"changed": False, "needs_staged": ["/usr/local/bin/uv"]}, {"changed": True}]
    )
    assert [e[0] for e in events] == ["call", "tmp", "send", "call"]
    assert "staged" not in events[0][1][0] and events[3][1][0]["staged"] == SENT
    assert events[2] == ("send", str(tmp_path / "uv"), SENT)
    assert result["sent"] == ["/usr/local/bin/uv"]


def test_a_host_with_send_first_is_sent_the_files_with_the_first_and_only_call(monkeypatch, tmp_path):
    result, events = run_action(monkeypatch, tmp_path, [{"changed": True}], send_first=True)
    assert [e[0] for e in events] == ["tmp", "send", "call"]
    assert events[2][1][0]["staged"] == SENT
    assert result["sent"] == ["/usr/local/bin/uv"]


def test_check_mode_sends_nothing_even_with_send_first(monkeypatch, tmp_path):
    result, events = run_action(monkeypatch, tmp_path, [{"changed": True}], check=True, send_first=True)
    assert [e[0] for e in events] == ["call"] and ["staged" in item for item in events[0][1]] == [False]
    assert "sent" not in result


def test_a_host_that_does_not_take_the_files_sent_first_is_an_error(monkeypatch, tmp_path):
    with pytest.raises(AnsibleActionFail, match="did not take the files sent to it"):
        run_action(
            monkeypatch,
            tmp_path,
            [{"changed": False, "needs_staged": ["/usr/local/bin/uv"]}],
            send_first=True,
        )


def wheelhouse(path, wheels: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in wheels.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_the_codes_requirements_are_a_step_of_their_own_after_the_venvs_packages(tmp_path):
    """The code's requirements file, given by its content, is installed into the venv after
    its packages, from the same wheelhouse; what it adds is the step's change, not the venv's
    (the agent role restarts running agents on a change of the venv, not of the code's)."""
    house = wheelhouse(
        tmp_path / "wheels.tar",
        {
            f"{name}-1.0-py3-none-any.whl": make_wheel(name, "1.0")
            for name in ("sfalpha", "sfbeta", "sfgamma")
        },
    )
    venv = {
        "path": str(tmp_path / "venv"),
        "python": sys.executable,
        "uv": str(UV),
        "packages": ["sfalpha==1.0"],
        "wheelhouse": house,
    }
    settings = {"UV_CACHE_DIR": str(tmp_path / "cache"), "UV_PYTHON_DOWNLOADS": "never"}
    given = "/controller/code/requirements.txt"
    result, _ = run(
        venv=venv, settings=settings, requirement_files=[{"path": given, "content": "sfbeta==1.0\n"}]
    )
    assert result["changed_steps"] == ["venv", "code_requirements"], result
    assert result["venv"]["installed"] == ["sfalpha==1.0"]
    assert result["code_requirements"]["installed"] == ["sfbeta==1.0"]
    assert result["code_requirements"]["requirements"] == [given]

    more = [{"path": given, "content": "sfbeta==1.0\nsfgamma==1.0\n"}]
    result, _ = run(venv=venv, settings=settings, requirement_files=more)
    assert result["changed_steps"] == ["code_requirements"], result
    assert not result["venv"]["changed"] and result["code_requirements"]["installed"] == ["sfgamma==1.0"]

    # A pyproject.toml is read as one (by its name), in check mode as a dry run.
    toml = "[project]\nname = 'c'\nversion = '1'\ndependencies = ['sfgamma==1.0', 'sfbeta==1.0']\n"
    result, _ = run(
        check=True,
        venv=venv,
        settings=settings,
        requirement_files=[{"path": "/controller/code/pyproject.toml", "content": toml}],
    )
    assert not result["changed"] and result["code_requirements"]["requirements"] == [
        "/controller/code/pyproject.toml"
    ]


def test_a_codes_requirements_that_ask_for_more_than_packages_are_refused(tmp_path):
    result, _ = run(
        venv={"path": str(tmp_path / "venv"), "python": sys.executable, "uv": str(UV)},
        settings={"UV_CACHE_DIR": str(tmp_path / "cache")},
        requirement_files=[{"path": "/controller/code/requirements.txt", "content": "sfbeta\n-e .\n"}],
    )
    assert result["failed"] and result["msg"].startswith(
        "/controller/code/requirements.txt line 2 is an option"
    )
    assert not (tmp_path / "venv").exists(), "refused before anything changed"
    result, _ = run(requirement_files=[{"path": "/c/requirements.txt", "content": "sfbeta\n"}])
    assert result["failed"] and "give venv too" in result["msg"]
    result, _ = run(code_requirements=["/c/requirements.txt"])
    assert result["failed"] and "handled by the action plugin" in result["msg"]


def test_the_action_sends_the_first_of_the_codes_requirement_files_that_exists(monkeypatch, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "pyproject.toml").write_text("[project]\n")
    candidates = [str(code / "requirements.txt"), str(code / "pyproject.toml")]
    _result, events = run_action(monkeypatch, tmp_path, [{"changed": True}], code_requirements=candidates)
    assert events[-1][2]["requirement_files"] == [{"path": candidates[1], "content": "[project]\n"}]
    assert "code_requirements" not in events[-1][2]

    (code / "requirements.txt").write_text("sfbeta==1.0\n")
    _result, events = run_action(monkeypatch, tmp_path, [{"changed": True}], code_requirements=candidates)
    assert [item["path"] for item in events[-1][2]["requirement_files"]] == [candidates[0]]

    _result, events = run_action(monkeypatch, tmp_path, [{"changed": True}], code_requirements=[])
    assert events[-1][2]["requirement_files"] == []
    _result, events = run_action(monkeypatch, tmp_path, [{"changed": True}])
    assert "requirement_files" not in events[-1][2]


def test_the_action_refuses_a_codes_requirements_file_that_is_a_link(monkeypatch, tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:secret\n")
    (tmp_path / "requirements.txt").symlink_to(secret)
    with pytest.raises(AnsibleActionFail, match="a link is refused"):
        run_action(
            monkeypatch, tmp_path, [{"changed": True}], code_requirements=[str(tmp_path / "requirements.txt")]
        )
