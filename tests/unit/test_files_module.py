"""The files module: directories and files converged in one call, secrets kept out of output."""

from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sweep_fleet.wandb.plugins.modules import files as files_module

from support import REPO, VENV_BIN, ansible_env

SECRET = "s3cret-" + "x" * 40


def run(check: bool = False, diff: bool = False, **args) -> dict:
    out = io.StringIO()
    args = {**args, "_ansible_check_mode": check, "_ansible_diff": diff}
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        files_module.main()
    return json.loads(out.getvalue()) | {"_raw": out.getvalue()}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_once_then_changes_nothing(tmp_path):
    args = {
        "directories": [{"path": str(tmp_path / "etc"), "owner": "root", "group": "root", "mode": "0700"}],
        "files": [{"path": str(tmp_path / "etc" / "a.env"), "content": "A=1\n", "mode": "0644"}],
        "private_files": [{"path": str(tmp_path / "etc" / "netrc"), "content": SECRET, "mode": "0600"}],
    }
    first = run(**args)
    assert first["changed"] and len(first["changed_paths"]) == 3
    assert (tmp_path / "etc" / "a.env").read_text() == "A=1\n"
    assert (mode(tmp_path / "etc"), mode(tmp_path / "etc" / "netrc")) == (0o700, 0o600)
    assert run(**args)["changed"] is False
    # A mode changed by hand is set back, the content left as it is.
    os.chmod(tmp_path / "etc" / "a.env", 0o666)
    assert run(**args)["changed_paths"] == [str(tmp_path / "etc" / "a.env")]
    assert mode(tmp_path / "etc" / "a.env") == 0o644


def test_check_mode_and_diff_show_only_what_is_not_secret(tmp_path):
    (tmp_path / "a.env").write_text("A=1\n")
    args = {
        "files": [{"path": str(tmp_path / "a.env"), "content": "A=2\n", "mode": "0644"}],
        "private_files": [{"path": str(tmp_path / "netrc"), "content": SECRET, "mode": "0600"}],
    }
    result = run(check=True, diff=True, **args)
    assert result["changed"] and (tmp_path / "a.env").read_text() == "A=1\n"
    assert not (tmp_path / "netrc").exists()
    (diff,) = result["diff"]
    assert (diff["before"], diff["after"]) == ("A=1\n", "A=2\n")
    assert SECRET not in result["_raw"]


def test_refuses_a_symlink_where_a_file_goes(tmp_path):
    (tmp_path / "target").write_text("root's file\n")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    result = run(files=[{"path": str(tmp_path / "link"), "content": "x"}])
    assert result["failed"] and "not a regular file" in result["msg"]
    assert (tmp_path / "target").read_text() == "root's file\n"


def test_the_action_renders_templates_per_item_and_hides_secrets(tmp_path):
    """Through ansible-playbook: templates of the playbook's directory, a file per item,
    a secret kept out of -vvv and --diff, check mode writing nothing, then no change."""
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "agent.env.j2").write_text(
        "{{ ansible_managed | comment }}\nAGENT={{ item }}\n"
    )
    (tmp_path / "templates" / "netrc.j2").write_text("machine h password {{ key }}\n")
    out = tmp_path / "out"
    task = {
        "directories": [
            {"paths": [str(out), str(out / "runs")], "owner": user, "group": group, "mode": "0750"}
        ],
        "files": [
            {
                "path": str(out / "agent-{item}.env"),
                "template": "agent.env.j2",
                "each": ["1", "2"],
                "owner": user,
                "group": group,
            },
            {
                "path": str(out / "netrc"),
                "template": "netrc.j2",
                "secret": True,
                "owner": user,
                "group": group,
                "mode": "0600",
            },
        ],
    }
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"key": SECRET},
            "tasks": [{"name": "write", "sweep_fleet.wandb.files": task, "register": "written"}],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))

    def playbook(*args: str) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-vvv", "--diff", str(tmp_path / "play.yml"), *args],
            cwd=REPO,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
        assert SECRET not in proc.stdout + proc.stderr
        return proc.stdout

    checked = playbook("--check")
    assert "changed=1" in checked and not out.exists()
    assert "+AGENT=2" in checked  # the diff of a file that is not secret
    written = playbook()
    assert "changed=1" in written
    assert (out / "agent-2.env").read_text() == "#\n# Ansible managed\n#\nAGENT=2\n"
    assert (out / "netrc").read_text() == f"machine h password {SECRET}\n"
    assert (mode(out), mode(out / "runs"), mode(out / "netrc")) == (0o750, 0o750, 0o600)
    assert "changed=0" in playbook()


# A run that owns the parent of a directory root converges swaps that directory with a link
# to a directory of root's, over and over (renameat2 RENAME_EXCHANGE), hoping that root
# chowns or chmods the link's target.
SWAPPER = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, seconds = sys.argv[1].encode(), sys.argv[2].encode(), float(sys.argv[3])
deadline, swaps = time.monotonic() + seconds, 0
while time.monotonic() < deadline:
    swaps += libc.renameat2(-100, a, -100, b, 2) == 0  # AT_FDCWD, RENAME_EXCHANGE
print(swaps)
"""


@pytest.fixture
def open_tmp():
    """A directory other users may enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="sweep-fleet-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_a_directory_swapped_for_a_link_in_a_loop_never_changes_the_target(open_tmp):
    tmp_path = open_tmp
    nobody = pwd.getpwnam("nobody")
    target = tmp_path / "target"  # root's, e.g. /etc
    target.mkdir(mode=0o755)
    runs = tmp_path / "state" / "runs"  # the run's user owns it (the layout before 0.5.0)
    runs.mkdir(parents=True)
    (runs / "1").mkdir()
    (runs / "evil").symlink_to(target)
    for path in (tmp_path / "state", runs, runs / "1"):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    os.lchown(runs / "evil", nobody.pw_uid, nobody.pw_gid)

    def as_nobody():
        os.setgroups([])
        os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
        os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)

    swapper = subprocess.Popen(
        ["/usr/bin/python3", "-c", SWAPPER, str(runs / "1"), str(runs / "evil"), "4"],
        preexec_fn=as_nobody,
        stdout=subprocess.PIPE,
        text=True,
    )
    item = {"path": str(runs / "1"), "owner": "nobody", "group": grp.getgrgid(nobody.pw_gid).gr_name}
    calls = refused = 0
    changed_target = []
    while swapper.poll() is None:
        for wanted in ("0700", "0750"):  # a change on every call
            result = run(directories=[{**item, "mode": wanted}])
            calls += 1
            refused += bool(result.get("failed"))
            st = os.stat(target)
            if (st.st_uid, stat.S_IMODE(st.st_mode)) != (0, 0o755):
                changed_target.append((st.st_uid, oct(stat.S_IMODE(st.st_mode))))
                os.chown(target, 0, 0)
                os.chmod(target, 0o755)
    swaps = int(swapper.stdout.read() or 0)
    print(f"{calls} module calls against {swaps} swaps: {refused} refused (a link in the way)")
    assert swaps > 1000 and calls > 20, "the race was really run"
    assert changed_target == [], f"root changed the link's target {len(changed_target)} times of {calls}"
