"""Helpers shared by the tests: run Ansible like a user does, and wait for things."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TEST_API_KEY = "fleettest-" + "k3y" * 14  # W&B's shape: prefix- and >= 40 chars of [A-Za-z0-9_]


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def run_playbook(
    playbook: Path | str,
    inventory: Path | str,
    *args: str,
    check: bool = True,
    json_output: bool = False,
    env: dict | None = None,
    timeout: float = 1200,
):
    """Run ansible-playbook; return the CompletedProcess (stdout parsed as JSON if asked)."""
    extra = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"} if json_output else {}
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *args]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=ansible_env(**extra, **(env or {})),
        text=True,
        capture_output=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode})\n--- stdout ---\n{proc.stdout[-20000:]}"
            f"\n--- stderr ---\n{proc.stderr[-5000:]}"
        )
    if json_output:
        proc.json = json.loads(proc.stdout[proc.stdout.index("{") :])
    return proc


def task_results(play_json: dict, task_name: str) -> dict[str, dict]:
    """Per-host results of the task named ``task_name`` from the json callback's output.

    A role's task may be named "role : name"; a serial play reports each batch as a play
    of its own, so the hosts of every matching task are gathered.
    """
    results = {}
    for play in play_json["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            if name == task_name or name.endswith(f" : {task_name}"):
                results.update(task["hosts"])
    if not results:
        raise KeyError(f"no task named {task_name!r} in the play output")
    return results


def wait_until(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


RECAP_RE = r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"


def recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host counts from the PLAY RECAP of ansible-playbook's default output."""
    counts = {}
    for host, ok, changed, unreachable, failed in re.findall(RECAP_RE, output, re.MULTILINE):
        counts[host] = {
            "ok": int(ok),
            "changed": int(changed),
            "unreachable": int(unreachable),
            "failed": int(failed),
        }
    return counts


def changed_tasks(output: str, host: str | None = None) -> list[str]:
    """Names of tasks that reported a change (default callback output), on one host or any."""
    tasks, current = [], None
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: [") and current and current not in tasks:
            who = line[len("changed: [") :].split("]", 1)[0].split(" -> ")[0]
            if host is None or who == host:
                tasks.append(current)
    return tasks


def git(*args: str, cwd) -> str:
    """Run git with a throwaway identity; return its output."""
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "PATH": "/usr/bin:/bin",
            "HOME": str(cwd),
        },
    ).stdout.strip()


class GitServer:
    """Bare repositories under ``root`` served by `git daemon` on ``host`` (where hosts reach it)."""

    def __init__(self, root: Path, host: str):
        self.root, self.host = root, host
        root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind((host, 0))
            self.port = sock.getsockname()[1]
        self.daemon = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                f"--base-path={root}",
                f"--listen={host}",
                f"--port={self.port}",
                str(root),
            ]
        )
        wait_until(self._listening, timeout=10, interval=0.1, what="git daemon listening")

    def _listening(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def publish(self, work: Path, name: str) -> str:
        """Push the work tree's branches to the bare repository ``name``; return its URL."""
        bare = self.root / f"{name}.git"
        if not bare.exists():
            git("init", "-q", "--bare", str(bare), cwd=self.root)
        git("push", "-q", "--all", str(bare), cwd=work)
        return f"git://{self.host}:{self.port}/{name}.git"

    def stop(self) -> None:
        self.daemon.terminate()
        self.daemon.wait(timeout=10)
