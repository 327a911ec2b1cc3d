"""Run one W&B sweep agent as a systemd service's main process (wandb-agent@.service).

sweep-fleet-agent run --sweep ENTITY/PROJECT/ID --code DIR [--term-timeout S] [--start-delay S]
                      [--count N] [--max-consecutive-failures N]
sweep-fleet-agent link --code DIR [--work DIR]
sweep-fleet-agent state --sweep ENTITY/PROJECT/ID

``run`` waits its start delay, links the code into the working directory, asks W&B for the
sweep's state (a finished or cancelled sweep: exit 0, so that systemd does not restart it),
then starts ``wandb agent`` and supervises it:

* SIGINT (a drain, from playbooks/stop.yml): the agent takes no new run and ends when its
  running run ends.
* SIGTERM (systemctl stop, a reboot, a platform's notice): a preempt. The agent takes no new
  run, each run gets SIGTERM once and has --term-timeout seconds to save, call
  run.mark_preempting() and exit (W&B then requeues it); runs still alive are killed with
  their process group. What is left (grandchildren holding GPU memory) is killed with the
  unit's cgroup by systemd once this process exits.

It runs as the service user, inside the unit's sandbox; the key comes from the unit's
credential ($NETRC). Standard library only; it shares its process rules with the
agent_info module (sweep_fleet_host.py, installed next to it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import netrc
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import sweep_fleet_host as host

DEFAULT_BASE_URL = "https://api.wandb.ai"
ENDED_STATES = ("FINISHED", "CANCELED")
# The sweep's state, as wandb's own clients ask for it.
SWEEP_STATE_QUERY = """
query SweepState($entity: String, $project: String, $name: String!) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $name) { id name state }
  }
}
"""
EXIT_CONFIG = 78  # EX_CONFIG: the unit's RestartPreventExitStatus, so a bad setting does not loop
LINK_SKIP = {".git", "wandb"}  # the repository's internals; the run directory W&B writes itself


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def link_code(code: Path, work: Path) -> list[str]:
    """Make ``work`` show the code: a link for each of its top-level entries.

    Runs write into ``work`` (their working directory) while the code itself stays
    root-owned and read-only. Entries a run created are left alone; links to entries
    that the code no longer has are removed. Returns what changed.
    """
    changed = []
    wanted = {entry.name for entry in code.iterdir() if entry.name not in LINK_SKIP}
    for entry in work.iterdir():
        if entry.is_symlink() and entry.name not in wanted:
            target = os.readlink(entry)
            if os.path.dirname(target) == str(code):
                entry.unlink()
                changed.append(f"-{entry.name}")
    for name in sorted(wanted):
        link, target = work / name, code / name
        if link.is_symlink():
            if os.readlink(link) == str(target):
                continue
            link.unlink()
        elif link.exists():
            log(f"{link} is not the code's {name}: a run wrote it; leaving it")
            continue
        try:
            link.symlink_to(target)
        except FileExistsError:  # linked at the same moment by the agent's own start
            if not (link.is_symlink() and os.readlink(link) == str(target)):
                raise
            continue
        changed.append(f"+{name}")
    return changed


class SweepStateError(Exception):
    """The state could not be read; ``permanent`` when asking again will not help."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def api_key(netrc_path: str, base_url: str) -> str:
    try:
        entry = netrc.netrc(netrc_path).authenticators(urlsplit(base_url).netloc)
    except (OSError, netrc.NetrcParseError) as err:
        raise SweepStateError(f"cannot read the key from {netrc_path}: {err}", permanent=True) from None
    if not entry or not entry[2]:
        raise SweepStateError(
            f"{netrc_path} has no key for {urlsplit(base_url).netloc}: deploy the credentials again",
            permanent=True,
        )
    return entry[2]


def sweep_state(path: str, base_url: str, key: str, timeout: float = 20) -> str:
    """RUNNING, PAUSED, FINISHED, CANCELED, ... for ENTITY/PROJECT/ID, or SweepStateError."""
    try:
        entity, project, name = path.split("/")
    except ValueError:
        raise SweepStateError(f"not a sweep path ENTITY/PROJECT/ID: {path!r}", permanent=True) from None
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    body = {"query": SWEEP_STATE_QUERY, "variables": {"entity": entity, "project": project, "name": name}}
    auth = base64.b64encode(f"api:{key}".encode()).decode()
    request = urllib.request.Request(
        base + "/graphql",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as err:
        permanent = err.code in (401, 403, 404)
        raise SweepStateError(f"{base} answered HTTP {err.code} for sweep {path}", permanent) from None
    except (OSError, ValueError) as err:
        raise SweepStateError(f"cannot reach {base}: {getattr(err, 'reason', err)}") from None
    if payload.get("errors"):
        messages = "; ".join(str(e.get("message", e)) for e in payload["errors"])
        raise SweepStateError(f"{base} refused the question for sweep {path}: {messages}", True)
    sweep = ((payload.get("data") or {}).get("project") or {}).get("sweep")
    if not sweep:
        raise SweepStateError(f"there is no sweep {path} at {base}", permanent=True)
    return str(sweep.get("state") or "RUNNING").upper()


def read_state(sweep: str) -> str:
    base = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
    key = api_key(os.environ.get("NETRC", ""), base)
    return sweep_state(sweep, base, key)


def pause(seconds: float, stopping) -> None:
    """Sleep, but wake up at once when a stop is asked for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stopping():
        time.sleep(0.1)


def wait_for_state(sweep: str, stopping, wait=pause) -> str | None:
    """The sweep's state; while W&B cannot be reached, ask again with backoff (None: stop asked)."""
    delay = 5.0
    while not stopping():
        try:
            return read_state(sweep)
        except SweepStateError as err:
            if err.permanent:
                raise
            log(f"{err}; asking again in {delay:.0f}s")
        wait(delay, stopping)
        delay = min(delay * 2, 60.0)
    return None


class Supervisor:
    """The agent process and what to do with it on SIGINT (drain) and SIGTERM (preempt)."""

    def __init__(self, argv: list[str], term_timeout: float):
        self.argv = argv
        self.term_timeout = term_timeout
        self.agent: subprocess.Popen | None = None
        self.drain_asked = False
        self.stop_asked = False
        self._sent_sigint = False
        self._signalled: set[int] = set()
        self._kill_at: float | None = None

    def on_signal(self, signum, _frame) -> None:
        if signum == signal.SIGINT:
            self.drain_asked = True
        else:
            self.stop_asked = True

    def start(self) -> None:
        self.agent = subprocess.Popen(self.argv)

    def _sigint_agent(self) -> None:
        if not self._sent_sigint and self.agent and self.agent.poll() is None:
            self._sent_sigint = True
            os.kill(self.agent.pid, signal.SIGINT)
            log(f"agent {self.agent.pid}: takes no new run")

    def step(self) -> None:
        """React to what was asked since the last step."""
        if self.drain_asked or self.stop_asked:
            self._sigint_agent()
        if not self.stop_asked or self.agent is None:
            return
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self.term_timeout
        runs = host.runs_of(self.agent.pid)
        for pid in set(runs) - self._signalled:
            self._signalled.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                log(f"sent SIGTERM to run process {pid}; it has {self.term_timeout:g}s to save and exit")
        if runs and time.monotonic() >= self._kill_at:
            for pid in runs:
                log(
                    f"run process {pid} still running after {self.term_timeout:g}s: killing its process group"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

    def wait(self) -> int:
        assert self.agent is not None
        while True:
            self.step()
            code = self.agent.poll()
            if code is not None:
                return code
            time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    supervisor = Supervisor([], args.term_timeout)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    signal.signal(signal.SIGTERM, supervisor.on_signal)

    def stopping() -> bool:
        return supervisor.drain_asked or supervisor.stop_asked

    pause(args.start_delay, stopping)
    work = Path.cwd()
    try:
        changed = link_code(Path(args.code), work)
    except OSError as err:
        log(f"cannot link the code {args.code} into {work}: {err}")
        return EXIT_CONFIG
    if changed:
        log(f"code linked into {work}: {' '.join(changed)}")
    cache = os.environ.get("WANDB_CACHE_DIR")
    if cache:  # wandb leaves a debug log per start there
        week_ago = time.time() - 7 * 86400
        for old in Path(cache).rglob("debug*.log"):
            if old.stat().st_mtime < week_ago:
                old.unlink()
    try:
        state = wait_for_state(args.sweep, stopping)
    except SweepStateError as err:
        log(f"{err}: not starting the agent")
        return EXIT_CONFIG
    if state is None:
        return 0
    if state in ENDED_STATES:
        log(f"sweep {args.sweep} is {state.lower()}: not starting the agent")
        return 0

    command = [os.path.join(os.path.dirname(sys.executable), "wandb"), "agent"]
    if args.count:
        command += ["--count", str(args.count)]
    if args.max_consecutive_failures:
        command += ["--max-consecutive-failed-runs", str(args.max_consecutive_failures)]
    supervisor.argv = [*command, args.sweep]
    supervisor.start()
    code = supervisor.wait()
    if stopping():
        return 0
    if code < 0:  # killed by a signal: a failure systemd restarts
        return 128 - code
    if code != 0:
        try:
            if read_state(args.sweep) in ENDED_STATES:
                log(f"sweep {args.sweep} has ended: the agent is done")
                return 0
        except SweepStateError:
            pass
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sweep-fleet-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the agent (the unit's ExecStart)")
    p_run.add_argument("--sweep", required=True, help="ENTITY/PROJECT/ID")
    p_run.add_argument("--code", required=True, help="the code directory to link into the working directory")
    p_run.add_argument("--term-timeout", type=float, default=60)
    p_run.add_argument("--start-delay", type=float, default=0)
    p_run.add_argument("--count", type=int, default=0, help="runs per agent (0: until the sweep ends)")
    p_run.add_argument("--max-consecutive-failures", type=int, default=0)
    p_link = sub.add_parser("link", help="link the code into a working directory")
    p_link.add_argument("--code", required=True)
    p_link.add_argument("--work", default=".")
    p_state = sub.add_parser("state", help="print the sweep's state")
    p_state.add_argument("--sweep", required=True)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "link":
        changed = link_code(Path(args.code), Path(args.work))
        print(" ".join(changed) if changed else "unchanged")
        return 0
    try:
        print(read_state(args.sweep))
    except SweepStateError as err:
        log(str(err))
        return EXIT_CONFIG if err.permanent else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
