"""Run one W&B sweep agent as a service's main process (wandb-agent@.service on Linux, an
NSSM service wandb-agent-N on Windows).

sweep-fleet-agent run [--sweep ENTITY/PROJECT/ID] --code DIR [--term-timeout S] [--start-delay S]
                      [--count N] [--max-consecutive-failures N] [--min-free-mb N]
                      [--env-file FILE ...] [--stop-file FILE] [--code-stamp FILE]
                      [--slurm [--max-requeues N] [--signal-file FILE]]
sweep-fleet-agent state [--sweep ENTITY/PROJECT/ID] [--env-file FILE ...]

``run`` waits its start delay, asks W&B for the sweep's state (a finished or cancelled sweep:
exit 0, so that systemd does not restart it), then starts ``wandb agent`` and supervises it.
On Linux the working directory already shows the code: root links it there (the
``agent_units`` module), where runs cannot replace the links.

* SIGINT (a drain, from playbooks/stop.yml): the agent takes no new run and ends when its
  running run ends.
* SIGHUP (the deploy moved the fleet to a new sweep): a drain, then exit 75 (EXIT_FOLLOW),
  which the unit restarts (the new launcher reads the new sweep); nothing is preempted.
* Free space (--min-free-mb) in the working directory, where runs write: below it, no
  agent is started, or the running agent takes no new run (as in a drain); then exit 79.
* SIGTERM (systemctl stop, a reboot, a platform's notice): a preempt. The agent takes no new
  run, each run gets SIGTERM once and has --term-timeout seconds to save, call
  run.mark_preempting() and exit (W&B then requeues it); runs still alive are killed with
  their process group. What is left (grandchildren holding GPU memory) is killed with the
  unit's cgroup by systemd once this process exits.

GPU agents are pinned to their GPUs by UUID; the launcher does not start the agent when a GPU
is no longer at the /dev/nvidiaN the deploy allowed (exit 78: run deploy.yml again). With
--gpu-share polite (a shared workstation) the agent takes a new run only while no process
outside this unit computes on its GPUs (nvidia-smi, every few seconds): when one appears,
the agent takes no new run (as in a drain), its running run finishes, and the launcher
waits until the GPUs are free, then starts the agent again. Nothing is killed.

As a SLURM array task (--slurm; started by the job script of the wandb_slurm role, whose
shell hands on the signals that ``scancel --batch`` and ``--signal=B:...`` send it, and
notes them in --signal-file, read once the handlers are set), it links the code into the
task's working directory itself (the job's user owns both), and:

* SIGUSR1 (SLURM's notice before the time limit): a preempt; then, while the sweep has
  work, the task is requeued (``scontrol requeue``), at most --max-requeues times
  ($SLURM_RESTART_COUNT); a new task of the job starts on a new allocation.
* SIGHUP (the deploy moved the fleet to a new sweep): a drain, then the task is requeued
  too, and starts on the new sweep.env.
* SIGINT (stop.yml's drain) and SIGTERM (stop.yml's preempt, scancel) end the task.

It runs as the agent's own user, inside the unit's sandbox; the key comes from the unit's
credential ($NETRC), and is never sent on to where a redirect points. Standard library
only; it shares its process rules with the agent_info module (sweep_fleet_host.py,
installed next to it).

On Windows (no cgroup, no signals between processes) NSSM's stop is a Ctrl-C, and what kind
of stop the playbooks asked for is in --stop-file ("drain", "preempt", the default, or
"kill", then a word that makes each request new); a drain is also noticed while running, and
so is "follow" (the SIGHUP of Linux: drain, exit 75, NSSM starts the launcher again).
The launcher, the agent and everything it starts run in a kill-on-close job object, so
nothing outlives the launcher. The agent is the base interpreter the venv's python.exe
starts (cpython#86207): that process is found in the job, ended for a drain or a preempt
(it takes no new run; its runs go on in the job), and its children are the runs. A drain
waits for the runs to end by themselves; a preempt sends each run Ctrl-Break (SIGBREAK in
Python: handle it as SIGTERM), waits up to --term-timeout seconds while any is alive, then
kills what is left. The settings come from --env-file (the files systemd reads on Linux).
Code files are copied into the working directory (directories, and the link to the venv,
are junctions), since a service account may not make symbolic links; the launcher does it
again when the deploy touches --code-stamp (the next run sees the new code).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import netrc
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import sweep_fleet_host as host

WINDOWS = os.name == "nt"
if WINDOWS:  # pragma: no cover (the tests stand in for it)
    import sweep_fleet_windows as windows
else:
    windows = None

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
# The agent gave up after --max-consecutive-failures failed runs in a row while the sweep
# goes on: this host looks broken (a GPU, a driver). Not restarted either; the other hosts
# take the work, and status.yml shows this one failing.
EXIT_FAILING = 79
# The agent drained to move to a new sweep: the service manager starts it again (the unit's
# RestartForceExitStatus; NSSM restarts any exit but 0, 78 and 79), on the new settings.
EXIT_FOLLOW = 75
DISK_CHECK_SECONDS = 10
GPU_CHECK_SECONDS = 5  # polite GPU sharing: how often the agent's GPUs are looked at
REDIRECT_WAIT = 30.0  # Windows: seconds for the venv's redirector to start the interpreter
LINK_SKIP = host.LINK_SKIP
COPIES = ".sweep-fleet-copies.json"  # Windows: the code files copied in, by sha256
STOP_MODES = ("drain", "preempt", "kill", "follow")
SIGUSR1 = getattr(signal, "SIGUSR1", None)  # SLURM's notice before the time limit
PRUNE_SECONDS = 300  # Windows: how often rotated logs are pruned while the agent runs
ROTATED_LOG = re.compile(r"^agent-\d{8}T\d{6}(\.\d+)?\.log$")  # NSSM's name for a rotated agent.log


def log(message: str) -> None:
    print(host.LOG_PREFIX + message, file=sys.stderr, flush=True)


def link_code(code: Path, work: Path, venv: str | None = None) -> list[str]:
    """Windows: make ``work`` show the code, a junction for each of its top-level
    directories and a copy of each file (a service account may not make symbolic links).

    Runs write into ``work`` (their working directory) while the code itself stays
    read-only to them. What a run put in place of a code entry (a changed copy, a file
    where a junction goes), which would otherwise run for every later run, is moved aside
    to NAME.shadowed-TIME and the code's entry put back; what the code no longer has is
    removed. Returns what changed (+NAME, -NAME, !NAME moved aside). (On Linux root links
    the code, where runs cannot replace it: sweep_fleet_host.link_code.)
    """
    changed = []
    targets = {entry.name: code / entry.name for entry in code.iterdir() if entry.name not in LINK_SKIP}
    if venv:  # the sweep's default command runs VENV_LINK/bin/python
        targets[host.VENV_LINK] = Path(venv)
    wanted = set(targets)
    copies = _read_copies(work)
    for entry in work.iterdir():
        if entry.name in wanted or entry.name == COPIES:
            continue
        target = link_target(entry)
        if target is not None and os.path.dirname(target) == str(code):
            _unlink(entry)
            changed.append(f"-{entry.name}")
        elif entry.name in copies and entry.is_file() and _sha256(entry) == copies.pop(entry.name):
            entry.unlink()
            changed.append(f"-{entry.name}")
    for name in sorted(wanted):
        link, target = work / name, targets[name]
        if not target.is_dir():
            changed += _copy_in(target, link, copies)
            continue
        current = link_target(link)
        if current is not None:
            if current == str(target):
                continue
            _unlink(link)
        elif link.exists() or link.is_symlink():
            _move_aside(link)
            changed.append(f"!{name}")
        if WINDOWS:
            windows.junction(str(target), str(link))
        else:  # the unit tests, on Linux
            link.symlink_to(target)
        changed.append(f"+{name}")
    _write_copies(work, copies)
    return changed


def _move_aside(path: Path) -> None:
    aside = path.with_name(f"{path.name}.shadowed-{time.strftime('%Y%m%dT%H%M%S')}")
    log(f"{path} is not the code's {path.name}: a run put it there; moved to {aside.name}")
    os.replace(path, aside)


def link_target(path: Path) -> str | None:
    """Where a symbolic link (or a Windows junction) points; None for anything else."""
    try:
        target = os.readlink(path)
    except (OSError, ValueError):
        return None
    return target[4:] if target.startswith("\\\\?\\") else target


def _unlink(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():  # a junction: removes the link, not the code
        os.rmdir(path)
    else:
        path.unlink()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_copies(work: Path) -> dict[str, str]:
    try:
        return dict(json.loads((work / COPIES).read_text()))
    except (OSError, ValueError):
        return {}


def _write_copies(work: Path, copies: dict[str, str]) -> None:
    temp = work / f"{COPIES}.tmp"
    temp.write_text(json.dumps(copies, sort_keys=True))
    os.replace(temp, work / COPIES)


def _copy_in(source: Path, dest: Path, copies: dict[str, str]) -> list[str]:
    """Copy a code file in. Anything else in its place (a copy a run changed, which would run
    for every later run) is moved aside first. Returns what changed."""
    digest, changed = _sha256(source), []
    if dest.exists() or dest.is_symlink():
        have = _sha256(dest) if dest.is_file() and not dest.is_symlink() else None
        if have == digest:
            copies[dest.name] = digest
            return []
        if have is None or copies.get(dest.name) != have:
            _move_aside(dest)
            changed.append(f"!{dest.name}")
    temp = dest.with_name(f"{dest.name}.sweep-fleet-tmp")
    shutil.copyfile(source, temp)
    os.replace(temp, dest)
    copies[dest.name] = digest
    return [*changed, f"+{dest.name}"]


def prune_logs(log_dir: str, keep: int) -> list[str]:
    """Windows: remove all but the newest ``keep`` logs NSSM rotated (agent-TIMESTAMP.log;
    the timestamp orders them). Only regular files: a link a run left there is not followed."""
    try:
        names = sorted(name for name in os.listdir(log_dir) if ROTATED_LOG.match(name))
    except OSError:
        return []
    removed = []
    for name in names[: max(len(names) - keep, 0)]:
        path = os.path.join(log_dir, name)
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed.append(name)
    return removed


def load_env_files(paths: list[str]) -> None:
    """KEY=VALUE lines into the environment, as systemd's EnvironmentFile= reads them."""
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise SweepStateError(f"cannot read the settings {path}: {err}", permanent=True) from None
        os.environ.update(host.env_file_values(text))


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """The GraphQL API never redirects: a redirect is refused, so the key (in the request's
    Authorization header, which urllib would send on) never goes where it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(newurl, code, f"a redirect to {newurl}, refused", headers, fp)


_OPENER = urllib.request.build_opener(NoRedirects)


class SweepStateError(Exception):
    """The state could not be read; ``permanent`` when asking again will not help;
    ``retry_after``: seconds the server asked to wait first (a rate limit)."""

    def __init__(self, message: str, permanent: bool = False, retry_after: float = 0):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


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
        with _OPENER.open(request, timeout=timeout) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as err:
        if 300 <= err.code < 400:
            where = err.headers.get("Location", "?") if err.headers else "?"
            raise SweepStateError(
                f"{base} answered HTTP {err.code}, a redirect to {where}: refused (the key is never sent "
                "on); set WANDB_BASE_URL (wandb_credentials_base_url) to the API's own address",
                permanent=True,
            ) from None
        permanent = err.code in (401, 403, 404)
        try:
            wait = float((err.headers or {}).get("Retry-After") or 0)
        except ValueError:
            wait = 0.0
        raise SweepStateError(
            f"{base} answered HTTP {err.code} for sweep {path}", permanent, retry_after=min(wait, 300.0)
        ) from None
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


def disk_short(path: Path, min_free_mb: int) -> str | None:
    """Why ``path``'s filesystem has too little room for runs, or None."""
    if min_free_mb <= 0:
        return None
    try:
        free = shutil.disk_usage(path).free / 2**20
    except OSError as err:
        return f"cannot read the free space of {path}: {err}"
    if free >= min_free_mb:
        return None
    return (
        f"disk full: {path} has {free:.0f} MB free, less than the {min_free_mb} MB runs need "
        "(wandb_agent_min_free_mb)"
    )


DISK_FIX = "free space there, then run playbooks/start.yml"


def last_run(sweep: str) -> str | None:
    """The id of the run the agent started last."""
    runs = host.started_runs(os.environ.get("WANDB_DIR") or ".", sweep.rsplit("/", 1)[-1])
    return max(runs, key=lambda run: (runs[run], run)) if runs else None


def wait_for_state(sweep: str, stopping, wait=pause) -> str | None:
    """The sweep's state; while W&B cannot be reached, ask again with backoff (None: stop asked)."""
    delay = 5.0
    while not stopping():
        try:
            return read_state(sweep)
        except SweepStateError as err:
            if err.permanent:
                raise
            delay = max(delay, err.retry_after)
            log(f"{err}; asking again in {delay:.0f}s")
        wait(delay, stopping)
        delay = min(delay * 2, 60.0)
    return None


class Supervisor:
    """The agent process and what to do with it on SIGINT (drain) and SIGTERM (preempt)."""

    def __init__(self, argv: list[str], term_timeout: float, stop_file: str = "", min_free_mb: int = 0):
        self.argv = argv
        self.min_free_mb = min_free_mb
        self.disk_full: str | None = None  # why no new run is taken: the disk is (nearly) full
        self.term_timeout = term_timeout
        self.stop_file = stop_file
        self.agent: subprocess.Popen | None = None
        self.job = None  # Windows: the job object the agent and its runs are in
        self.drain_asked = False
        self.follow_asked = False  # a drain, to start again on a new sweep
        self.stop_asked = False
        self.kill_asked = False
        self._sent_sigint = False
        self._signalled: set[int] = set()
        self._kill_at: float | None = None
        self._started = time.time()
        self.relink = None  # (code, work, stamp): link the code again when the stamp changes
        self._stamp_seen: float | None = None
        self._agent_pid: int | None = None  # Windows: the agent behind the venv's redirector
        self.logs: tuple[str, int] | None = None  # Windows: (log dir, rotated logs to keep)
        self._last_check: dict[str, float] = {}  # periodic checks: when each last ran
        self.requeue_asked = False  # SLURM: the time limit is near (SIGUSR1)
        self.user_stop = False  # SIGINT or SIGTERM: a stop, never followed by a requeue
        # Polite GPU sharing: the agent's GPUs (UUIDs), the memory others may hold there, and
        # why the agent waits (it took no new run, its running one went on).
        self.polite_gpus: list[str] = []
        self.gpu_busy_mib = 0
        self.gpu_wait: str | None = None
        self._cgroup = ""

    def share_gpus(self, uuids: list[str], busy_mib: int) -> None:
        """Take a new run only while no process outside this unit computes on ``uuids``."""
        self.polite_gpus = uuids
        self.gpu_busy_mib = busy_mib
        self._cgroup = host.cgroup_of("self")

    def gpus_busy(self) -> str | None:
        """Why the agent's GPUs are not free for a new run (None: they are, or no report)."""
        gpus = host.read_gpus()
        if gpus is None:
            return None
        return host.gpu_busy(gpus, self.polite_gpus, self.mine, self.gpu_busy_mib)

    def mine(self, pid: int) -> bool:
        """Whether a process is this unit's: in its cgroup (where systemd puts all that the
        agent starts), or, without a cgroup of its own to tell (cgroup v1), the launcher's
        descendant; on Windows, in its job object. Another user's process is hidden from the
        agent (ProtectProc=invisible): not its own."""
        if WINDOWS:
            return self.job is not None and pid in self.job.pids()
        if self._cgroup not in ("", "/"):
            return host.cgroup_of(pid) == self._cgroup
        me, seen = os.getpid(), 0
        while pid > 1 and seen < 64:
            fields = host.stat_fields(pid)
            if fields is None:
                return False
            pid, seen = int(fields[1]), seen + 1
            if pid == me:
                return True
        return False

    def _watch_gpus(self) -> None:
        if not self.polite_gpus or self.gpu_wait or self.draining or self.stop_asked:
            return
        if not self._due("gpus", GPU_CHECK_SECONDS):
            return
        busy = self.gpus_busy()
        if busy:
            self.gpu_wait = busy
            log(f"waiting: {busy}: the running run finishes; no new run until the GPU is free")
            self._no_new_run()

    def again(self) -> None:
        """Ready to start the agent again (after a wait for the GPUs)."""
        self.agent = None
        self.gpu_wait = None
        self._sent_sigint = False
        self._signalled.clear()
        self._kill_at = None

    def _due(self, check: str, every: float) -> bool:
        """Whether the periodic ``check`` runs now: at once the first time, then every
        ``every`` seconds."""
        now = time.monotonic()
        last = self._last_check.get(check)
        if last is not None and now < last + every:
            return False
        self._last_check[check] = now
        return True

    def _prune_logs(self) -> None:
        if not self.logs or not self._due("logs", PRUNE_SECONDS):
            return
        removed = prune_logs(*self.logs)
        if removed:
            log(f"removed {len(removed)} rotated logs beyond the newest {self.logs[1]}")

    def relink_when(self, code: Path, work: Path, stamp: str) -> None:
        """Windows: link ``code`` into ``work`` again whenever ``stamp`` changes."""
        self.relink = (code, work, stamp)

    def _watch_code(self) -> None:
        first = "code" not in self._last_check
        if not self.relink or not self._due("code", 10):
            return
        code, work, stamp = self.relink
        try:
            seen = os.stat(stamp).st_mtime
        except OSError:
            seen = None
        if not first and seen is not None and seen != self._stamp_seen:
            try:
                changed = link_code(code, work, venv=sys.prefix)
            except OSError as err:
                log(f"cannot link the new code into {work}: {err}")
            else:
                if changed:
                    log(f"new code linked into {work}: {' '.join(changed)}")
        self._stamp_seen = seen

    def _watch_disk(self) -> None:
        if self.disk_full or not self.min_free_mb or not self._due("disk", DISK_CHECK_SECONDS):
            return
        self.disk_full = disk_short(Path.cwd(), self.min_free_mb)
        if self.disk_full:
            log(f"error: {self.disk_full}: the agent takes no new run")
            self._no_new_run()

    @property
    def draining(self) -> bool:
        return self.drain_asked or self.disk_full is not None

    def requested(self) -> str | None:
        """The stop the playbooks wrote into --stop-file since this launcher started."""
        try:
            if not self.stop_file or os.stat(self.stop_file).st_mtime < self._started:
                return None
            words = Path(self.stop_file).read_text(encoding="utf-8").split()
        except OSError:
            return None
        mode = words[0].lower() if words else ""  # then a word that makes each request new
        return mode if mode in STOP_MODES else None

    def ask(self, mode: str) -> None:
        if mode in ("drain", "follow"):
            self.drain_asked = True
            self.follow_asked = self.follow_asked or mode == "follow"
        else:
            self.stop_asked = True
            self.kill_asked = self.kill_asked or mode == "kill"

    def on_signal(self, signum, _frame) -> None:
        if WINDOWS:  # NSSM's stop (Ctrl-C): the kind of stop is in the stop file
            self.ask(self.requested() or "preempt")
        elif signum == signal.SIGINT:
            self.drain_asked = True
            self.user_stop = True
        elif signum == signal.SIGHUP:
            self.ask("follow")
        elif signum == SIGUSR1:  # SLURM: the time limit is near
            self.requeue_asked = True
            self.stop_asked = True
        else:
            self.stop_asked = True
            self.user_stop = True

    def start(self) -> None:
        if WINDOWS:
            # The launcher first: the agent and all it starts are in the job from their first
            # instruction. Its own process group: the service's Ctrl-C reaches the launcher only.
            self.job = windows.Job()
            self.job.add_current()
            self.agent = subprocess.Popen(self.argv, creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
            self._agent_pid = self._find_agent()
        else:
            self.agent = subprocess.Popen(self.argv)

    def _find_agent(self, wait: float = REDIRECT_WAIT) -> int:
        """Windows: a venv's python.exe is a redirector that starts the base interpreter
        (Python's venv docs): the agent is its child, which appears soon after it starts."""
        assert self.agent is not None
        if sys.prefix == sys.base_prefix:  # not a venv: the started process is the agent
            return self.agent.pid
        until = time.monotonic() + wait
        while True:
            found = windows.real_agent(self.agent.pid, self.job.pids(), windows.processes())
            if found is not None:
                return found
            if time.monotonic() >= until or self.agent.poll() is not None:
                break
            time.sleep(0.05)
        log(f"no interpreter behind {self.argv[0]} (pid {self.agent.pid}) after {wait:g}s: using it")
        return self.agent.pid

    def agent_pid(self) -> int:
        """The process running ``wandb agent`` (on Windows, behind the venv's redirector)."""
        assert self.agent is not None
        return self._agent_pid if self._agent_pid is not None else self.agent.pid

    def runs(self) -> list[int]:
        assert self.agent is not None
        if WINDOWS:
            # A run's parent stays recorded after the agent ended: the runs are still found.
            return windows.runs_of(self.agent_pid(), self.job.pids(), windows.processes())
        return host.runs_of(self.agent.pid)

    def _no_new_run(self) -> None:
        if not self._sent_sigint and self.agent and self.agent.poll() is None:
            self._sent_sigint = True
            if WINDOWS:  # no signal reaches it alone: end it; its running runs go on in the job
                windows.kill(self.agent_pid())  # and the redirector in front of it ends too
            else:
                os.kill(self.agent.pid, signal.SIGINT)
            log(f"agent {self.agent_pid()}: takes no new run")

    def step(self) -> None:
        """React to what was asked since the last step."""
        self._watch_code()
        self._prune_logs()
        self._watch_disk()
        self._watch_gpus()
        if WINDOWS and not (self.drain_asked or self.stop_asked) and self.requested() in ("drain", "follow"):
            self.ask(self.requested() or "drain")
        if self.kill_asked and self.agent is not None:
            if self.job is not None:
                self.job.kill_others()
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.agent.pid, signal.SIGKILL)
            return
        if self.drain_asked or self.stop_asked:
            self._no_new_run()
        if not self.stop_asked or self.agent is None:
            return
        if self._kill_at is None:
            self._kill_at = time.monotonic() + self.term_timeout
        runs = self.runs()
        for pid in set(runs) - self._signalled:
            self._signalled.add(pid)
            with contextlib.suppress(ProcessLookupError, OSError):
                if WINDOWS:
                    windows.ctrl_break(pid)
                else:
                    os.kill(pid, signal.SIGTERM)
                log(f"asked run process {pid} to stop; it has {self.term_timeout:g}s to save and exit")
        if runs and time.monotonic() >= self._kill_at:
            log(f"runs {runs} still running after {self.term_timeout:g}s: killing them")
            if self.job is not None:
                self.job.kill_others()
            else:
                for pid in runs:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)

    def wait(self) -> int:
        assert self.agent is not None
        while True:
            self.step()
            code = self.agent.poll()
            # On Windows the agent ended for a drain or a preempt while its runs go on: wait
            # for them (a preempt's step() kills them after --term-timeout).
            stopping = self.draining or self.stop_asked
            if code is not None and not (WINDOWS and stopping and self.runs()):
                return code
            time.sleep(0.2)


def gpus_moved(expected: str, gpus: list[dict] | None) -> str | None:
    """Why the agent's GPUs are not where the deploy allowed them (``expected``: its
    SWEEP_FLEET_GPUS, UUID=MINOR,...), or None. Its unit may open only those /dev/nvidiaN: a
    GPU that moved (hardware added, removed or failed) needs the deploy to run again."""
    if not expected or gpus is None:
        return None
    by_uuid = {g["uuid"].lower(): g for g in gpus}
    for pair in expected.split(","):
        uuid, _sep, minor = pair.strip().partition("=")
        if not minor.lstrip("-").isdigit() or int(minor) < 0:
            continue
        gpu = by_uuid.get(uuid.lower())
        if gpu is None:
            return f"GPU {uuid} is not visible to this agent (gone, or moved from /dev/nvidia{minor})"
        if gpu["minor"] >= 0 and gpu["minor"] != int(minor):
            return f"GPU {uuid} is /dev/nvidia{gpu['minor']} now, not /dev/nvidia{minor} as at the deploy"
    return None


def wait_for_gpus(supervisor: Supervisor, stopping, wait=pause) -> bool:
    """Polite sharing: wait until the agent's GPUs are free; False when a stop came first."""
    shown = None
    while not stopping():
        busy = supervisor.gpus_busy()
        if not busy:
            if shown:
                log("the GPUs are free again: taking runs")
            return True
        if busy != shown:
            log(f"waiting: {busy}: no new run until the GPU is free")
            shown = busy
        wait(GPU_CHECK_SECONDS, stopping)
    return False


def signals_noted(path: str) -> list[str]:
    """SLURM: the signals the job script received and noted in ``path`` (one name per line)."""
    try:
        with open(path, "rb") as handle:  # the job's user writes it; read a few lines at most
            text = handle.read(4096).decode("ascii", "replace")
    except OSError:
        return []
    return [name for name in text.split() if name in ("USR1", "INT", "TERM", "HUP")]


def requeue(sweep: str, max_requeues: int | None, why: str) -> int:
    """SLURM: requeue this array task (a new start on a new allocation) while the sweep
    has work and (unless ``max_requeues`` is None) the task was requeued fewer than
    ``max_requeues`` times."""
    # This task alone: an array task's own SLURM_JOB_ID may also be the array's id, and
    # requeueing that requeues every task of the array.
    job = os.environ.get("SLURM_JOB_ID", "")
    if os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{os.environ.get('SLURM_ARRAY_JOB_ID', '')}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    try:
        state = read_state(sweep)
    except SweepStateError as err:
        state = ""
        log(f"{err}: requeueing anyway")
    if state in ENDED_STATES:
        log(f"sweep {sweep} is {state.lower()}: the task is done")
        return 0
    if max_requeues is not None and restarts >= max_requeues:
        log(f"{why}: task already requeued {restarts} times (wandb_slurm_max_requeues): not again")
        return 0
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        log(f"{why}: scontrol requeue {job} failed: {proc.stderr.strip()}")
        return 1
    log(f"{why}: job {job} requeued (requeue {restarts + 1})")
    return 0


def run(args: argparse.Namespace) -> int:
    code, supervisor = supervise(args)
    if args.slurm and supervisor.user_stop:
        return code
    if args.slurm and supervisor.requeue_asked:
        return requeue(args.sweep, args.max_requeues, "the time limit is near")
    if args.slurm and code == EXIT_FOLLOW:
        return requeue(args.sweep, None, "the fleet moved to a new sweep")
    return code


def supervise(args: argparse.Namespace) -> tuple[int, Supervisor]:
    """Start the agent and supervise it until it ends; its exit code, and how it was asked
    to stop."""
    supervisor = Supervisor([], args.term_timeout, args.stop_file, args.min_free_mb)
    return _supervise(args, supervisor), supervisor


def _supervise(args: argparse.Namespace, supervisor: Supervisor) -> int:
    signal.signal(signal.SIGINT, supervisor.on_signal)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    if WINDOWS:  # pragma: no cover
        signal.signal(signal.SIGBREAK, supervisor.on_signal)
    else:
        signal.signal(signal.SIGHUP, supervisor.on_signal)
    if args.slurm:
        signal.signal(SIGUSR1, supervisor.on_signal)
        for name in signals_noted(args.signal_file):  # those that came before the handlers
            supervisor.on_signal(getattr(signal, f"SIG{name}"), None)

    def moved() -> int | None:
        """Exit 75 when the deploy moved the agent to a new sweep (it is started again)."""
        if supervisor.follow_asked and not supervisor.stop_asked:
            log(f"sweep {args.sweep}: the fleet moved to a new sweep; starting again on it")
            return EXIT_FOLLOW
        return None

    def stopping() -> bool:
        return supervisor.drain_asked or supervisor.stop_asked

    pause(args.start_delay, stopping)
    work = Path.cwd()
    if args.slurm:  # the job's user owns the working directory and the code
        try:
            changed = host.link_code(args.code, str(work), extra={host.VENV_LINK: sys.prefix})
        except OSError as err:
            log(f"cannot link the code {args.code} into {work}: {err}")
            return EXIT_CONFIG
        if changed:
            log(f"code linked into {work}: {' '.join(changed)}")
    elif WINDOWS:  # on Linux root has linked it (agent_units)
        try:
            changed = link_code(Path(args.code), work, venv=sys.prefix)
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
        return moved() or 0
    if state in ENDED_STATES:
        log(f"sweep {args.sweep} is {state.lower()}: not starting the agent")
        return 0
    full = disk_short(work, args.min_free_mb)
    if full:
        log(f"error: {full}: not starting the agent; {DISK_FIX}")
        return EXIT_FAILING
    pinned = os.environ.get("SWEEP_FLEET_GPUS", "")
    if pinned and not WINDOWS and not args.slurm:
        moved_gpu = gpus_moved(pinned, host.read_gpus())
        if moved_gpu:
            log(f"error: {moved_gpu}: not starting the agent; run deploy.yml again")
            return EXIT_CONFIG
    if args.gpu_share == "polite":
        uuids = [u for u in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if u.strip()]
        supervisor.share_gpus(uuids, args.gpu_busy_mib)

    scripts = os.path.dirname(sys.executable)
    # On Windows the venv's python.exe itself (uv's wandb.exe would be one more process in
    # front of the agent); it starts the base interpreter, found then by agent_pid().
    command = (
        [sys.executable, "-m", "wandb", "agent"] if WINDOWS else [os.path.join(scripts, "wandb"), "agent"]
    )
    if WINDOWS:  # the runs' `python` is the venv's (systemd's unit sets PATH on Linux)
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    if args.count:
        command += ["--count", str(args.count)]
    if args.max_consecutive_failures:
        command += ["--max-consecutive-failed-runs", str(args.max_consecutive_failures)]
    supervisor.argv = [*command, args.sweep]
    if args.code_stamp:
        supervisor.relink_when(Path(args.code), work, args.code_stamp)
    if args.log_dir:
        supervisor.logs = (args.log_dir, args.keep_logs)
    while True:
        if supervisor.polite_gpus and not wait_for_gpus(supervisor, stopping):
            break
        supervisor.start()
        code = supervisor.wait()
        if not (supervisor.gpu_wait and not stopping()):
            break
        supervisor.again()  # it drained for another user's process: wait, then start again
    if stopping():
        return moved() or 0
    if supervisor.disk_full:
        log(f"error: {supervisor.disk_full}: the agent has stopped; {DISK_FIX}")
        return EXIT_FAILING
    if code < 0:  # killed by a signal: a failure systemd restarts
        return 128 - code
    if code == 0 and args.max_consecutive_failures and not args.count:
        # wandb agent ends with 0 when it gives up after failed runs; it ends by itself
        # otherwise only when the sweep has (or --count was reached).
        try:
            state = read_state(args.sweep)
        except SweepStateError:
            state = ""
        if state and state not in ENDED_STATES:
            run_id = last_run(args.sweep)
            last = f", the last {args.sweep.rsplit('/', 1)[0]}/{run_id}," if run_id else ""
            log(
                f"the agent failed: {args.max_consecutive_failures} failed runs in a row{last} while "
                f"sweep {args.sweep} is {state.lower()}: this host looks broken (see the runs' "
                "output in this log); not restarting; fix it, then run playbooks/start.yml"
            )
            return EXIT_FAILING
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
    p_run.add_argument("--sweep", help="ENTITY/PROJECT/ID (default: $SWEEP_FLEET_SWEEP)")
    p_run.add_argument(
        "--code", required=True, help="the code directory (Windows: linked into the working directory)"
    )
    p_run.add_argument("--term-timeout", type=float, default=60)
    p_run.add_argument("--start-delay", type=float, help="seconds (default: $SWEEP_FLEET_START_DELAY or 0)")
    p_run.add_argument("--count", type=int, default=0, help="runs per agent (0: until the sweep ends)")
    p_run.add_argument("--max-consecutive-failures", type=int, default=0)
    p_run.add_argument("--min-free-mb", type=int, default=0, help="free space runs need (0: no check)")
    p_run.add_argument("--stop-file", default="", help="Windows: where the playbooks ask for a kind of stop")
    p_run.add_argument("--code-stamp", default="", help="link the code again whenever this file changes")
    p_run.add_argument("--log-dir", default="", help="Windows: where NSSM rotates the agent's log")
    p_run.add_argument("--keep-logs", type=int, default=5, help="rotated logs kept in --log-dir")
    p_run.add_argument(
        "--gpu-share",
        choices=("exclusive", "polite"),
        default="exclusive",
        help="polite: take a new run only while no other process computes on this agent's GPUs",
    )
    p_run.add_argument(
        "--gpu-busy-mib", type=int, default=0, help="polite: others' memory that makes a GPU busy"
    )
    p_run.add_argument("--slurm", action="store_true", help="run as a SLURM array task")
    p_run.add_argument("--max-requeues", type=int, default=0, help="SLURM: requeues of the task at most")
    p_run.add_argument("--signal-file", default="", help="SLURM: where the job script notes its signals")
    p_state = sub.add_parser("state", help="print the sweep's state")
    p_state.add_argument("--sweep", help="ENTITY/PROJECT/ID (default: $SWEEP_FLEET_SWEEP)")
    for sub_parser in (p_run, p_state):
        sub_parser.add_argument(
            "--env-file", action="append", default=[], help="KEY=VALUE settings to read first (repeatable)"
        )
    args = parser.parse_args(argv)
    if args.command in ("run", "state"):
        try:
            load_env_files(args.env_file)
        except SweepStateError as err:
            log(str(err))
            return EXIT_CONFIG
        args.sweep = args.sweep or os.environ.get("SWEEP_FLEET_SWEEP", "")
        if not args.sweep:
            log("no sweep: give --sweep or SWEEP_FLEET_SWEEP")
            return EXIT_CONFIG
    if args.command == "run" and args.start_delay is None:
        try:
            args.start_delay = float(os.environ.get("SWEEP_FLEET_START_DELAY") or 0)
        except ValueError:
            args.start_delay = 0.0
    if args.command == "run":
        return run(args)
    try:
        print(read_state(args.sweep))
    except SweepStateError as err:
        log(str(err))
        return EXIT_CONFIG if err.permanent else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
