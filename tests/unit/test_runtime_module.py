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

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sweep_fleet.wandb.plugins.modules import runtime

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
