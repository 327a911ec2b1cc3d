"""The agent launcher (wandb_agent/files/sweep_fleet_agent.py) against real processes and the stand-in.

A fake agent stands for ``wandb agent`` where only its process tree matters: it starts a
run in its own process group (as the agent does), the run starts a helper in that group
and a worker in a session of its own (a GPU-holding grandchild), and the agent stops taking
runs on SIGINT. The sweep state is read from the W&B API stand-in over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from standin import StandIn
from support import REPO, TEST_API_KEY, Recorder, wait_until

FILES = REPO / "roles" / "wandb_agent" / "files"
sys.path.insert(0, str(FILES))
import sweep_fleet_agent as launcher  # noqa: E402
import sweep_fleet_host as host  # noqa: E402

FAKE_AGENT = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    state, run_seconds, on_term = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    draining = False
    def drain(*_):
        global draining
        draining = True
    signal.signal(signal.SIGINT, drain)
    run = subprocess.Popen([sys.executable, "-c", sys.argv[4], state, str(run_seconds), on_term],
                           process_group=0)
    open(os.path.join(state, "run.pid"), "w").write(str(run.pid))
    run.wait()
    open(os.path.join(state, "agent.exit"), "w").write(str(run.returncode))
    sys.exit(0)
    """
)
FAKE_RUN = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    state, seconds, on_term = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    def term(*_):
        open(os.path.join(state, "run.sigterm"), "w").write("1")
        if on_term == "exit":
            sys.exit(143)
    signal.signal(signal.SIGTERM, term if on_term in ("exit", "ignore") else signal.SIG_DFL)
    helper = subprocess.Popen(["sleep", "300"])  # same process group as the run
    worker = subprocess.Popen(["sleep", "300"], start_new_session=True)  # its own session
    open(os.path.join(state, "tree.pids"), "w").write(f"{helper.pid} {worker.pid}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    helper.kill(); worker.kill()
    sys.exit(0)
    """
)


def pid_alive(pid: int) -> bool:
    return host.alive(pid)


@pytest.fixture
def tree(tmp_path):
    """Start a launcher Supervisor over the fake agent; yield (supervisor, state dir)."""
    started = []

    def start(run_seconds: float, on_term: str, term_timeout: float = 5, min_free_mb: int = 0):
        argv = [sys.executable, "-c", FAKE_AGENT, str(tmp_path), str(run_seconds), on_term, FAKE_RUN]
        supervisor = launcher.Supervisor(argv, term_timeout, min_free_mb=min_free_mb)
        supervisor.start()
        started.append(supervisor)
        wait_until(lambda: (tmp_path / "tree.pids").exists(), timeout=10, what="the run's process tree")
        return supervisor

    yield start, tmp_path
    for supervisor in started:
        if supervisor.agent.poll() is None:
            supervisor.agent.kill()
    for name in ("tree.pids", "run.pid"):
        if (tmp_path / name).exists():
            for pid in (tmp_path / name).read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def test_the_run_is_the_agents_child_that_leads_its_own_group(tree):
    start, state = tree
    supervisor = start(run_seconds=30, on_term="exit")
    run_pid = int((state / "run.pid").read_text())
    helper, worker = map(int, (state / "tree.pids").read_text().split())
    assert host.runs_of(supervisor.agent.pid) == [run_pid]
    assert host.agent_of(supervisor.agent.pid) == 0, "the fake agent is not `wandb agent`"
    assert helper not in host.runs_of(supervisor.agent.pid) and worker not in host.runs_of(run_pid)


def test_drain_lets_the_run_finish(tree):
    start, state = tree
    supervisor = start(run_seconds=1.5, on_term="exit")
    supervisor.on_signal(signal.SIGINT, None)
    assert supervisor.wait() == 0
    assert (state / "agent.exit").read_text() == "0", "the run finished on its own"
    assert not (state / "run.sigterm").exists(), "a drain never signals the run"


def test_a_full_disk_stops_new_runs_and_lets_the_running_one_end(tree, monkeypatch):
    """Fault 8: the runs' filesystem fills while a run goes on."""
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(launcher.shutil, "disk_usage", lambda _path: usage._replace(free=5 * 2**20))
    start, state = tree
    supervisor = start(run_seconds=1.5, on_term="exit", min_free_mb=64)
    assert supervisor.wait() == 0
    assert supervisor.disk_full and "has 5 MB free, less than the 64 MB runs need" in supervisor.disk_full
    assert supervisor._sent_sigint, "the agent was not told to take no new run"
    assert (state / "agent.exit").read_text() == "0", "the running run did not end by itself"
    assert not (state / "run.sigterm").exists(), "the running run was stopped"


def test_free_space_is_read_where_the_runs_write(tmp_path, monkeypatch):
    assert launcher.disk_short(tmp_path, 0) is None  # 0: no check
    assert launcher.disk_short(tmp_path, 1) is None
    assert re.search(
        rf"^disk full: {re.escape(str(tmp_path))} has \d+ MB free, less than the {10**9} MB runs need",
        launcher.disk_short(tmp_path, 10**9),
    )
    assert "cannot read the free space" in launcher.disk_short(tmp_path / "gone", 1)


def test_sighup_drains_to_move_to_a_new_sweep(tree):
    """The deploy moved the fleet to a new sweep: the run finishes, nothing is signalled."""
    start, state = tree
    supervisor = start(run_seconds=1.5, on_term="exit")
    supervisor.on_signal(signal.SIGHUP, None)
    assert supervisor.follow_asked and supervisor.wait() == 0
    assert (state / "agent.exit").read_text() == "0", "the run finished on its own"
    assert not (state / "run.sigterm").exists(), "moving to a new sweep never signals the run"


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (SigCgt in /proc/PID/status)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_sighup_before_the_agent_starts_exits_75_for_a_restart_on_the_new_sweep(standin, tmp_path):
    sweep = standin.create_sweep(GRID, project="p")
    proc = start_launcher(standin, tmp_path, sweep.path, "--start-delay", "60", stderr=subprocess.PIPE)
    wait_until(lambda: catches(proc.pid, signal.SIGHUP), timeout=20, what="the launcher's SIGHUP handler")
    proc.send_signal(signal.SIGHUP)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == launcher.EXIT_FOLLOW, err
    assert "the fleet moved to a new sweep" in err and standin.agents == {}


def test_preempt_sends_the_run_sigterm_once(tree):
    start, state = tree
    supervisor = start(run_seconds=60, on_term="exit")
    started = time.monotonic()
    supervisor.on_signal(signal.SIGTERM, None)
    assert supervisor.wait() == 0
    assert time.monotonic() - started < 5, "the run saved and exited at once"
    assert (state / "run.sigterm").exists()
    assert (state / "agent.exit").read_text() == "143"


def test_a_run_that_ignores_sigterm_is_killed_with_its_group_after_the_timeout(tree):
    start, state = tree
    supervisor = start(run_seconds=60, on_term="ignore", term_timeout=1.5)
    run_pid = int((state / "run.pid").read_text())
    helper, worker = map(int, (state / "tree.pids").read_text().split())
    started = time.monotonic()
    supervisor.on_signal(signal.SIGTERM, None)
    assert supervisor.wait() == 0
    took = time.monotonic() - started
    assert 1.5 <= took < 10, took
    assert (state / "run.sigterm").exists(), "it was asked first"
    assert (state / "agent.exit").read_text() == str(-signal.SIGKILL)
    wait_until(
        lambda: not pid_alive(run_pid) and not pid_alive(helper), timeout=5, what="the run's group gone"
    )
    # A worker in a session of its own is out of the group's reach: systemd's cgroup kill
    # (KillMode=mixed) ends it once the launcher exits (tests/e2e: the kill and preempt stops).
    assert pid_alive(worker)


def test_a_second_signal_does_not_interrupt_the_agent_again(tree):
    start, state = tree
    supervisor = start(run_seconds=1.5, on_term="exit")
    supervisor.on_signal(signal.SIGINT, None)
    supervisor.step()
    supervisor.on_signal(signal.SIGINT, None)
    supervisor.step()
    assert supervisor._sent_sigint
    assert supervisor.wait() == 0
    assert (state / "agent.exit").read_text() == "0"


def test_root_links_the_code_and_moves_aside_what_a_run_put_in_its_place(tmp_path):
    code, work = tmp_path / "code", tmp_path / "work"
    (code / "train").mkdir(parents=True)
    (code / "main.py").write_text("print(1)\n")
    (code / ".git").mkdir()
    work.mkdir()
    (work / "checkpoints").mkdir()
    (work / "wandb").mkdir()
    assert host.link_code(str(code), str(work)) == ["+main.py", "+train"]
    assert os.readlink(work / "main.py") == str(code / "main.py")
    assert not (work / ".git").exists() and (work / "checkpoints").is_dir()
    assert host.link_code(str(code), str(work)) == [], "a second time changes nothing"
    (code / "main.py").unlink()
    (code / "eval.py").write_text("")
    assert host.link_code(str(code), str(work)) == ["-main.py", "+eval.py"]
    # A run replaced a link with a file of its own, which every later run would run: it is
    # moved aside, and root's link is back.
    (work / "eval.py").unlink()
    (work / "eval.py").write_text("mine")
    assert host.link_code(str(code), str(work)) == ["!eval.py", "+eval.py"]
    assert os.readlink(work / "eval.py") == str(code / "eval.py")
    (aside,) = work.glob("eval.py.shadowed-*")
    assert aside.read_text() == "mine"
    # A link of a run's own (not root's) to the right place is replaced by root's too.
    (work / "eval.py").unlink()
    (work / "eval.py").symlink_to(code / "eval.py")
    os.lchown(work / "eval.py", 65534, 65534)
    assert host.link_code(str(code), str(work)) == ["+eval.py"]
    assert os.lstat(work / "eval.py").st_uid == 0


def test_root_follows_no_link_a_run_or_a_user_could_have_made(tmp_path):
    """open_dir reaches a directory component by component: a root link in a directory only
    root can change is followed (as /var/run -> /run), any other link is refused."""
    real = tmp_path / "real"
    (real / "runs" / "1").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)  # root's link in root's directory
    fd = host.open_dir(str(tmp_path / "alias" / "runs" / "1"))
    try:
        assert os.fstat(fd).st_ino == os.stat(real / "runs" / "1").st_ino
    finally:
        os.close(fd)
    open_runs = tmp_path / "open"
    open_runs.mkdir()
    os.chown(open_runs, 65534, 65534)  # a directory someone else may change
    (open_runs / "1").symlink_to(real / "runs" / "1")
    with pytest.raises(host.UnsafePath):
        host.open_dir(str(open_runs / "1"))
    with pytest.raises(OSError):  # a run's link below a root-owned base is never followed
        host.open_under(str(real), "runs-link")


def test_a_run_file_is_read_only_when_it_is_a_small_regular_file(tmp_path):
    folder = tmp_path / "wandb" / "sweep-abc"
    folder.mkdir(parents=True)
    (folder / "config-r1.yaml").write_text("lr:\n  value: 0.1\n")
    os.mkfifo(folder / "config-r2.yaml")  # would hang a plain open()
    (folder / "config-r3.yaml").symlink_to("/dev/zero")  # would never end
    (folder / "config-r4.yaml").write_bytes(b"x" * (host.RUN_FILE_LIMIT + 1))
    assert host.run_config(str(tmp_path), "abc", "r1") == b"lr:\n  value: 0.1\n"
    for run in ("r2", "r3", "r4", "../r1", "nosuch"):
        assert host.run_config(str(tmp_path), "abc", run) is None, run
    assert set(host.started_runs(str(tmp_path), "abc")) == {"r1", "r4"}, "regular files only"


def test_the_old_shared_users_files_go_to_the_agents_own_user_and_nothing_else(tmp_path):
    work = tmp_path / "work"
    (work / "wandb" / "sweep-abc").mkdir(parents=True)
    (work / "wandb" / "sweep-abc" / "config-r1.yaml").write_text("x")
    (work / "roots").write_text("root's")
    (work / "link").symlink_to("/etc")
    for path in (
        work / "wandb",
        work / "wandb" / "sweep-abc",
        work / "wandb" / "sweep-abc" / "config-r1.yaml",
    ):
        os.chown(path, 4242, 4242)
    os.lchown(work / "link", 4242, 4242)
    etc = os.stat("/etc")
    assert host.adopt(str(work), 4242, 5000, 5000) == 4
    assert os.stat(work / "wandb" / "sweep-abc" / "config-r1.yaml").st_uid == 5000
    assert os.lstat(work / "link").st_uid == 5000
    assert (os.stat("/etc").st_uid, os.stat("/etc").st_gid) == (etc.st_uid, etc.st_gid), "no link followed"
    assert os.stat(work / "roots").st_uid == 0, "what is not the old user's stays"


@pytest.fixture
def standin():
    with StandIn(api_key=TEST_API_KEY) as server:
        yield server


def netrc_for(path: Path, server: StandIn, key: str = TEST_API_KEY) -> Path:
    path.write_text(f"machine {server.url.split('://', 1)[1]}\n  login user\n  password {key}\n")
    path.chmod(0o600)
    return path


GRID = {"program": "main.py", "method": "grid", "parameters": {"x": {"values": [1, 2]}}}


@pytest.mark.parametrize("state", ["RUNNING", "PAUSED", "FINISHED", "CANCELED"])
def test_state_check_reads_the_sweep(standin, tmp_path, monkeypatch, state):
    sweep = standin.create_sweep(GRID, project="p")
    standin.set_state(sweep.id, state)
    monkeypatch.setenv("WANDB_BASE_URL", standin.url)
    monkeypatch.setenv("NETRC", str(netrc_for(tmp_path / "netrc", standin)))
    assert launcher.read_state(sweep.path) == state


def test_state_check_of_an_unknown_sweep_or_key_is_permanent(standin, tmp_path, monkeypatch):
    sweep = standin.create_sweep(GRID, project="p")
    monkeypatch.setenv("WANDB_BASE_URL", standin.url)
    monkeypatch.setenv("NETRC", str(netrc_for(tmp_path / "netrc", standin)))
    with pytest.raises(launcher.SweepStateError) as err:
        launcher.read_state(f"{standin.entity}/p/nosuchid")
    assert err.value.permanent
    netrc_for(tmp_path / "netrc", standin, key="wrong-" + "k" * 40)
    with pytest.raises(launcher.SweepStateError) as err:
        launcher.read_state(sweep.path)
    assert err.value.permanent and "401" in str(err.value)


def test_state_check_refuses_a_redirect_and_sends_the_key_nowhere_else(standin, tmp_path, monkeypatch):
    elsewhere = Recorder("127.0.0.2")
    sweep = standin.create_sweep(GRID, project="p")
    standin.inject("redirect", location=f"{elsewhere.url}/graphql")
    try:
        with pytest.raises(launcher.SweepStateError) as refused:
            launcher.sweep_state(sweep.path, standin.url, TEST_API_KEY)
    finally:
        elsewhere.stop()
    assert refused.value.permanent and f"a redirect to {elsewhere.url}/graphql: refused" in str(refused.value)
    assert elsewhere.requests == []


def test_state_check_waits_as_long_as_a_rate_limit_asks(standin, monkeypatch):
    sweep = standin.create_sweep(GRID, project="p")
    standin.inject("http429", operation="SweepState", count=1, seconds=42)
    monkeypatch.setenv("WANDB_BASE_URL", standin.url)
    monkeypatch.setattr(launcher, "api_key", lambda *_: TEST_API_KEY)
    waited = []
    state = launcher.wait_for_state(sweep.path, lambda: False, wait=lambda s, _stop: waited.append(s))
    assert state == "RUNNING" and waited == [42.0]


def test_state_check_waits_while_wandb_is_unreachable(standin, tmp_path, monkeypatch):
    sweep = standin.create_sweep(GRID, project="p")
    monkeypatch.setenv("WANDB_BASE_URL", standin.url)
    monkeypatch.setenv("NETRC", str(netrc_for(tmp_path / "netrc", standin)))
    standin.inject("http500", count=2)
    waited = []
    state = launcher.wait_for_state(sweep.path, lambda: False, wait=lambda s, _stopping: waited.append(s))
    assert state == "RUNNING"
    assert waited == [5.0, 10.0], "asked again with a growing pause"
    assert len([r for r in standin.requests if r[2] == "SweepState"]) == 3


def start_launcher(
    standin, tmp_path, sweep_path: str, *extra: str, files: dict | None = None, **popen
) -> subprocess.Popen:
    """The launcher as the unit starts it, in a working directory of its own."""
    code, work = tmp_path / "code", tmp_path / "work"
    code.mkdir(exist_ok=True)
    for name, text in (files or {"main.py": ""}).items():
        (code / name).write_text(text)
    work.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        WANDB_BASE_URL=standin.url,
        NETRC=str(netrc_for(tmp_path / "netrc", standin)),
        PYTHONPATH=str(FILES),
    )
    return subprocess.Popen(
        [
            sys.executable,
            str(FILES / "sweep_fleet_agent.py"),
            "run",
            "--sweep",
            sweep_path,
            "--code",
            str(code),
            *extra,
        ],
        cwd=work,
        env=env,
        text=True,
        **popen,
    )


def run_launcher(
    standin, tmp_path, sweep_path: str, *extra: str, files: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """The launcher run to its end; its output."""
    proc = start_launcher(
        standin, tmp_path, sweep_path, *extra, files=files, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_launcher_does_not_start_an_agent_for_an_ended_sweep(standin, tmp_path):
    sweep = standin.create_sweep(GRID, project="p")
    standin.set_state(sweep.id, "FINISHED")
    proc = run_launcher(standin, tmp_path, sweep.path)
    assert proc.returncode == 0, proc.stderr
    assert "is finished: not starting the agent" in proc.stderr
    assert standin.agents == {}


def test_launcher_does_not_start_an_agent_on_a_full_disk(standin, tmp_path):
    sweep = standin.create_sweep(GRID, project="p")
    proc = run_launcher(standin, tmp_path, sweep.path, "--min-free-mb", str(10**9))
    assert proc.returncode == launcher.EXIT_FAILING, proc.stderr
    assert f"error: disk full: {tmp_path / 'work'} has " in proc.stderr
    assert "not starting the agent; free space there, then run playbooks/start.yml" in proc.stderr
    assert standin.agents == {}


def test_launcher_refuses_a_sweep_that_does_not_exist_without_a_restart_loop(standin, tmp_path):
    proc = run_launcher(standin, tmp_path, f"{standin.entity}/p/nosuchid")
    assert proc.returncode == launcher.EXIT_CONFIG, proc.stderr
    assert "not starting the agent" in proc.stderr


@pytest.mark.integration
def test_an_agent_whose_runs_all_fail_gives_up_and_is_not_restarted(standin, tmp_path):
    """A broken host (fault 6): every run fails at once. The real wandb agent stops after
    --max-consecutive-failures of them; the launcher exits 79 (no restart) and says why,
    and the rest of the grid is left to the other hosts."""
    config = {"program": "broken.py", "method": "grid", "parameters": {"x": {"values": [1, 2, 3, 4, 5, 6]}}}
    sweep = standin.create_sweep(config, project="p")
    broken = "import sys\nsys.exit('CUDA error: no CUDA-capable device is detected')\n"
    proc = run_launcher(
        standin,
        tmp_path,
        sweep.path,
        "--max-consecutive-failures",
        "2",
        files={"broken.py": broken},
        timeout=180,
    )
    assert proc.returncode == launcher.EXIT_FAILING, proc.stderr[-3000:]
    assert "the agent failed: 2 failed runs in a row" in proc.stderr
    # The runs died before wandb.init(): W&B has no word from them, so they stay pending
    # until its stale timeout, and are crashed then, never finished.
    runs = standin.records(sweep.id)
    assert [r["params"]["x"] for r in runs] == [1, 2], runs
    assert [r["state"] for r in runs] == ["pending", "pending"], runs
    later = time.time() + standin.run_timeout + 1
    standin.clock = lambda: later
    assert [r["state"] for r in standin.records(sweep.id)] == ["crashed", "crashed"]
    last = f"{standin.entity}/p/{runs[1]['run_id']}"
    assert f"2 failed runs in a row, the last {last}, while sweep" in proc.stderr
    assert standin.sweep(sweep.id).state == "RUNNING"  # four values left for the other hosts


def test_rotated_logs_beyond_the_newest_are_pruned_and_links_left(tmp_path):
    """Windows: NSSM renames agent.log to agent-TIMESTAMP.log at each rotation; the launcher
    keeps the newest --keep-logs of them, never the live log nor what is not a regular file."""
    logs = tmp_path / "logs"
    logs.mkdir()
    stamps = [f"2026120{day}T101010.{day}00" for day in range(1, 8)]
    for stamp in stamps:
        (logs / f"agent-{stamp}.log").write_text(stamp)
    (logs / "agent.log").write_text("live")
    (logs / "notes.log").write_text("someone's")
    outside = tmp_path / "outside.log"
    outside.write_text("not ours")
    (logs / "agent-20250101T000000.000.log").symlink_to(outside)  # the oldest name: a link
    removed = launcher.prune_logs(str(logs), keep=3)
    assert removed == [f"agent-{stamp}.log" for stamp in stamps[:4]]
    left = sorted(p.name for p in logs.iterdir())
    assert left == sorted(
        ["agent.log", "notes.log", "agent-20250101T000000.000.log", *(f"agent-{s}.log" for s in stamps[4:])]
    )
    assert outside.read_text() == "not ours"
    assert launcher.prune_logs(str(tmp_path / "missing"), keep=3) == []


# -- SLURM array tasks ----------------------------------------------------------------------
@pytest.fixture
def scontrol(tmp_path, monkeypatch):
    """A recording scontrol on PATH, and the environment SLURM gives array task 7_2."""
    calls = tmp_path / "scontrol.calls"
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # task 2's own id: here also the array's
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "7")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    return calls


@pytest.mark.parametrize(
    ("state", "restarts", "requeued"),
    [("RUNNING", 0, ["requeue 7_2"]), ("RUNNING", 3, []), ("FINISHED", 0, []), ("CANCELED", 1, [])],
)
def test_a_slurm_task_is_requeued_alone_while_the_sweep_has_work_and_the_limit_allows(
    scontrol, monkeypatch, state, restarts, requeued
):
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(restarts))
    monkeypatch.setattr(launcher, "read_state", lambda sweep: state)
    assert launcher.requeue("e/p/s1", 3, "the time limit is near") == 0
    calls = scontrol.read_text().splitlines() if scontrol.exists() else []
    # Never the array's id alone: that would requeue every task, runs mid-save included.
    assert calls == requeued


def test_signals_the_job_script_noted_before_the_handlers_are_read_back(tmp_path):
    noted = tmp_path / ".sweep-fleet-signal"
    assert launcher.signals_noted(str(noted)) == []
    noted.write_text("USR1\nKILL\nHUP\n" + "x" * 10000 + "\nINT\n")  # read up to 4 KiB
    assert launcher.signals_noted(str(noted)) == ["USR1", "HUP"]
    noted.unlink()
    noted.mkdir()  # not a file: nothing
    assert launcher.signals_noted(str(noted)) == []
