"""Helpers shared by the tests: run Ansible like a user does, and wait for things."""

from __future__ import annotations

import collections
import contextlib
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


def _runtime_defaults() -> dict:
    import yaml

    return yaml.safe_load((REPO / "roles" / "wandb_runtime" / "defaults" / "main.yml").read_text())


# The pinned versions (and uv's hashes), from their one source: the runtime role's defaults.
VERSIONS = {
    name: value for name, value in _runtime_defaults().items() if name.startswith("wandb_runtime_") and (
        name.endswith("_version") or name.endswith("_sha256"))
}  # fmt: skip


def fleet_vars(standin, **values) -> dict:
    """The settings every test deploy starts from (the key, the W&B stand-in, uv from the
    controller), then ``values``."""
    return {
        "wandb_credentials_api_key": TEST_API_KEY,
        "wandb_credentials_base_url": standin.url,
        "wandb_runtime_uv_source": "controller",
        **values,
    }


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


def playbook_command(playbook: Path | str, inventory: Path | str, *args: str) -> list[str]:
    """ansible-playbook from the venv, to run from the repository root with ansible_env()."""
    return [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *args]


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
    cmd = playbook_command(playbook, inventory, *args)
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


def recap(output: str, controller: bool = False) -> dict[str, dict[str, int]]:
    """Per-host counts from the PLAY RECAP of ansible-playbook's default output: what changed
    on the hosts. localhost, the controller (where the preflight checks the inventory), is
    left out unless ``controller``: a test of what changed before any host is touched asks
    for it too."""
    counts = {}
    for host, ok, changed, unreachable, failed in re.findall(RECAP_RE, output, re.MULTILINE):
        if host == "localhost" and not controller:
            continue
        counts[host] = {
            "ok": int(ok),
            "changed": int(changed),
            "unreachable": int(unreachable),
            "failed": int(failed),
        }
    return counts


def round_trips(output: str, modules: bool = False) -> collections.Counter:
    """The commands a run (-vvv output) sent to each host over ssh, by the host's address,
    but for Ansible's own Python interpreter discovery (one per host and run, unless the
    inventory sets ansible_python_interpreter); with ``modules``, only the module calls
    (those that start Python: not a temporary directory made or removed, nor a file sent)."""
    sent = re.findall(r"^<([^>]+)> SSH: EXEC (.*)$", output, re.MULTILINE)
    return collections.Counter(
        host
        for host, command in sent
        if "echo ENDFOUND" not in command and (not modules or "python" in command)
    )


def changed_tasks(
    output: str, host: str | None = None, *, ran: bool = False, seen: bool = False
) -> list[str]:
    """Names of tasks that reported a change (default callback output), on one host or any;
    with ``ran``, of those that ran there at all (ok or changed: neither skipped nor left out);
    with ``seen``, of those Ansible handed the host at all (skipped too: not left out)."""
    tasks, current = [], None
    starts = ("changed: [",) + (("ok: [",) if ran or seen else ()) + (("skipping: [",) if seen else ())
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith(starts) and current and current not in tasks:
            who = line.split("[", 1)[1].split("]", 1)[0].split(" -> ")[0]
            if host is None or who == host:
                tasks.append(current)
    return tasks


def task_output(output: str, task: str) -> str:
    """What one task printed (default callback output), for a failing test's message."""
    lines, inside = [], False
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY [")):
            inside = line.startswith(f"TASK [{task}]")
        if inside:
            lines.append(line)
    return "\n".join(lines)


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


class AuthProxy:
    """An HTTP CONNECT proxy on ``host`` (the hosts' downloads go through it).

    With a user and password it wants Basic auth: it counts the tunnels it opened for the
    right password and refuses the rest (407), so a test can show that a proxy password was
    really used while it never showed up. It counts the bytes it carried from upstream
    (``bytes_in``): what the hosts fetched, for the benchmark.
    """

    def __init__(self, host: str, user: str | None = None, password: str | None = None):
        import base64
        import threading

        self.expected = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user is not None else None
        )
        self.tunnels = 0
        self.refused = 0
        self.bytes_in = 0
        self._lock = threading.Lock()
        self._server = socket.create_server((host, 0))
        self.port = self._server.getsockname()[1]
        self.url_host = f"{host}:{self.port}"
        self._stopping = False
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@{self.url_host}"

    def _serve(self) -> None:
        import threading

        while not self._stopping:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        import threading

        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            if self.expected is not None and headers.get("proxy-authorization") != self.expected:
                with self._lock:
                    self.refused += 1
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                return
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=30)
            with self._lock:
                self.tunnels += 1
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

            def pipe(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                        if src is upstream:
                            with self._lock:
                                self.bytes_in += len(data)
                except OSError:
                    pass
                finally:
                    for end in (src, dst):
                        with contextlib.suppress(OSError):
                            end.shutdown(socket.SHUT_RDWR)

            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
            pipe(client, upstream)
        except (OSError, ValueError):
            pass
        finally:
            client.close()

    def stop(self) -> None:
        self._stopping = True
        self._server.close()


class Recorder:
    """An HTTP server on ``host`` that answers 200 to anything and records each request's
    method, path and headers: where a redirect points, to see whether a key followed it."""

    def __init__(self, host: str = "127.0.0.2"):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        recorder = self
        self.requests: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers)}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _record

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
