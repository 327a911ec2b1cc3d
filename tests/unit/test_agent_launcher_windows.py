"""The agent launcher's Windows branches, run here with the Windows layer stood in for.

There is no Windows host here: the job object, the process table, Ctrl-Break and
junctions (sweep_fleet_windows.py) are replaced by a recording stand-in, and the launcher
is switched to its Windows behaviour. What is checked is the launcher's own logic: which
kind of stop it makes of NSSM's Ctrl-C and the stop file, what it does to the agent, the
runs and the job, when it returns, how code reaches a working directory without symbolic
links, and how the settings files are read. That the Win32 calls themselves work is not
checked here (see the README's Windows section).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from support import REPO

FILES = REPO / "roles" / "wandb_agent" / "files"
sys.path.insert(0, str(FILES))
import sweep_fleet_agent as launcher  # noqa: E402
import sweep_fleet_windows  # noqa: E402 (ctypes' Windows types load on any system)

LAUNCHER = os.getpid()
# The launcher starts the venv's python.exe (a redirector), which starts the base interpreter
# running `wandb agent`; that starts wandb-core and, for each run, the command's python
# (the venv's redirector again, in a process group of its own), whose interpreter may start
# workers of its own.
REDIRECTOR, AGENT, RUN, RUN_BASE, CORE, GRANDCHILD = 90, 100, 200, 210, 300, 400
TREE = {
    REDIRECTOR: (LAUNCHER, "python.exe"),
    AGENT: (REDIRECTOR, "python.exe"),
    CORE: (AGENT, "wandb-core.exe"),
    RUN: (AGENT, "python.exe"),
    RUN_BASE: (RUN, "python.exe"),
    GRANDCHILD: (RUN_BASE, "python.exe"),
}


class FakeRedirector:
    """The ``subprocess.Popen`` of the venv's python.exe: it waits for the interpreter it
    started and ends with it."""

    pid = REDIRECTOR

    def __init__(self, world):
        self.world = world

    def poll(self):
        if AGENT in self.world.alive or REDIRECTOR not in self.world.alive:
            return None if REDIRECTOR in self.world.alive else 1
        self.world.alive.discard(REDIRECTOR)
        return 1


class World:
    """The Windows layer: the processes alive (all in the launcher's job), their parents
    and names as a process snapshot shows them, and what was done to them."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.table = dict(TREE)  # a dead process keeps no entry, its children keep its pid
        self.alive = {LAUNCHER, *TREE}
        world = self

        class Job:
            def add_current(self):
                world.calls.append(("job holds the launcher",))

            def pids(self):
                return sorted(world.alive)

            def kill_others(self):
                world.calls.append(("kill the job but the launcher",))
                world.alive &= {LAUNCHER}

        self.Job = Job

    def processes(self):
        return {pid: entry for pid, entry in self.table.items() if pid in self.alive}

    real_agent = staticmethod(sweep_fleet_windows.real_agent)
    runs_of = staticmethod(sweep_fleet_windows.runs_of)

    def kill(self, pid):
        self.calls.append(("kill", pid))
        assert pid != LAUNCHER, "the launcher killed itself"
        self.alive.discard(pid)

    def ctrl_break(self, pid):
        self.calls.append(("ctrl-break", pid))

    def junction(self, target, link):
        os.symlink(target, link)  # what a junction looks like to os.readlink

    def run_ends(self):
        self.alive -= {RUN, RUN_BASE, GRANDCHILD}


@pytest.fixture
def world(monkeypatch):
    world = World()
    monkeypatch.setattr(launcher, "WINDOWS", True)
    monkeypatch.setattr(launcher, "windows", world)
    monkeypatch.setattr(launcher.sys, "base_prefix", "C:\\Python312")  # the launcher runs in a venv
    return world


def supervisor(world, tmp_path, timeout=30.0):
    argv = ["python.exe", "-m", "wandb", "agent", "e/p/s"]
    sup = launcher.Supervisor(argv, timeout, str(tmp_path / "stop"))
    sup.job = world.Job()
    sup.agent = FakeRedirector(world)
    sup._agent_pid = sup._find_agent(wait=0)  # what start() finds
    return sup


def write_stop(tmp_path: Path, mode: str) -> None:
    (tmp_path / "stop").write_text(f"{mode} 2026-12-03T10:00:00.123456")
    later = time.time() + 5
    os.utime(tmp_path / "stop", (later, later))


def test_the_agent_is_the_interpreter_behind_the_venvs_redirector(world, tmp_path, monkeypatch):
    table = world.processes()
    assert sweep_fleet_windows.real_agent(REDIRECTOR, sorted(world.alive), table) == AGENT
    assert sweep_fleet_windows.real_agent(AGENT, sorted(world.alive), table) == AGENT  # several children
    assert sweep_fleet_windows.real_agent(REDIRECTOR, [LAUNCHER, REDIRECTOR], table) is None  # not yet
    # start() waits for the interpreter to appear (the redirector starts it a moment later).
    world.alive.discard(AGENT)
    sup = launcher.Supervisor(["python.exe"], 30)
    sup.job, sup.agent = world.Job(), FakeRedirector(world)
    world.alive.add(AGENT)  # as if started while the launcher looked
    assert sup._find_agent() == AGENT
    # Outside a venv the started process is the agent itself.
    monkeypatch.setattr(launcher.sys, "base_prefix", launcher.sys.prefix)
    assert sup._find_agent() == REDIRECTOR


def test_a_redirector_that_starts_nothing_is_taken_for_the_agent(world, monkeypatch):
    world.alive -= {AGENT, CORE, RUN, RUN_BASE, GRANDCHILD}
    sup = launcher.Supervisor(["python.exe"], 30)
    sup.job, sup.agent = world.Job(), FakeRedirector(world)
    sup.agent.poll = lambda: None
    monkeypatch.setattr(launcher.time, "sleep", lambda _s: None)
    assert sup._find_agent(wait=0.01) == REDIRECTOR


def test_the_runs_are_the_agents_children_in_the_job_but_not_wandb_core(world):
    table = world.processes()
    assert sweep_fleet_windows.runs_of(AGENT, sorted(world.alive), table) == [RUN]
    assert sweep_fleet_windows.runs_of(AGENT, [AGENT, CORE], table) == []
    world.alive.discard(AGENT)  # the agent ended: its run is still found by its parent's pid
    assert sweep_fleet_windows.runs_of(AGENT, sorted(world.alive), world.processes()) == [RUN]


def test_nssms_ctrl_c_without_a_stop_file_is_a_preempt(world, tmp_path, monkeypatch):
    sup = supervisor(world, tmp_path)
    sup.on_signal(signal.SIGINT, None)
    assert (sup.stop_asked, sup.drain_asked, sup.kill_asked) == (True, False, False)
    sup.step()
    sup.step()
    # The agent (not its redirector) takes no new run; the run (its own process group) gets
    # Ctrl-Break once; the launcher waits for it while the redirector has ended.
    assert world.calls == [("kill", AGENT), ("ctrl-break", RUN)]
    assert sup.agent.poll() == 1 and REDIRECTOR not in world.alive

    def sleep(_seconds):
        world.calls.append(("waited",))
        if world.calls.count(("waited",)) == 3:
            world.run_ends()  # the run saved its state and exited

    monkeypatch.setattr(launcher.time, "sleep", sleep)
    assert sup.wait() == 1
    assert world.calls[2:] == [("waited",)] * 3  # returned only once the run had ended
    assert ("kill the job but the launcher",) not in world.calls  # it had its --term-timeout


def test_a_run_still_alive_after_the_timeout_is_killed_with_the_whole_job(world, tmp_path):
    sup = supervisor(world, tmp_path, timeout=0)
    sup.on_signal(signal.SIGINT, None)
    sup.step()
    assert world.calls == [("kill", AGENT), ("ctrl-break", RUN), ("kill the job but the launcher",)]
    assert world.alive == {LAUNCHER}  # the grandchild holding GPU memory too
    assert sup.wait() == 1


def test_a_drain_in_the_stop_file_ends_the_agent_and_waits_for_the_run(world, tmp_path, monkeypatch):
    sup = supervisor(world, tmp_path)
    write_stop(tmp_path, "drain")
    sup.step()
    assert sup.drain_asked and not sup.stop_asked
    assert world.calls == [("kill", AGENT)]
    assert sup.agent.poll() is not None and sup.runs() == [RUN]  # the run goes on

    def run_ends(_seconds):
        world.calls.append(("waited",))
        world.run_ends()  # and ends by itself

    monkeypatch.setattr(launcher.time, "sleep", run_ends)
    assert sup.wait() == 1
    assert world.calls == [("kill", AGENT), ("waited",)]  # not before the run ended
    assert ("ctrl-break", RUN) not in world.calls and ("kill the job but the launcher",) not in world.calls


def test_follow_in_the_stop_file_drains_to_start_again_on_the_new_sweep(world, tmp_path, monkeypatch):
    """The deploy moved the fleet to a new sweep: the run finishes on its own, nothing is
    signalled, and the launcher will exit 75 (NSSM starts it again on the new settings)."""
    sup = supervisor(world, tmp_path)
    write_stop(tmp_path, "follow")
    sup.step()
    assert (sup.follow_asked, sup.drain_asked, sup.stop_asked) == (True, True, False)
    assert world.calls == [("kill", AGENT)]
    monkeypatch.setattr(launcher.time, "sleep", lambda _seconds: world.run_ends())
    sup.wait()
    assert ("ctrl-break", RUN) not in world.calls and ("kill the job but the launcher",) not in world.calls


def test_kill_in_the_stop_file_ends_the_job_at_once(world, tmp_path):
    sup = supervisor(world, tmp_path)
    write_stop(tmp_path, "kill")
    sup.on_signal(signal.SIGINT, None)
    sup.step()
    assert world.calls == [("kill the job but the launcher",)]
    assert world.alive == {LAUNCHER}


def test_a_stop_file_older_than_the_launcher_is_not_a_request(world, tmp_path):
    (tmp_path / "stop").write_text("drain 2026-12-03T09:00:00")
    earlier = time.time() - 60
    os.utime(tmp_path / "stop", (earlier, earlier))
    sup = supervisor(world, tmp_path)
    sup.step()
    assert not sup.drain_asked and world.calls == []
    (tmp_path / "stop").write_text("nonsense")
    os.utime(tmp_path / "stop", (time.time() + 5,) * 2)
    assert sup.requested() is None
    write_stop(tmp_path, "Preempt")
    assert sup.requested() == "preempt"  # the first word; the second makes each request new


def test_code_reaches_a_working_directory_without_symbolic_links(world, tmp_path):
    code, work = tmp_path / "code", tmp_path / "work"
    (code / "data").mkdir(parents=True)
    (code / "train.py").write_text("v1")
    (code / "old.py").write_text("old")
    work.mkdir()
    assert launcher.link_code(code, work) == ["+data", "+old.py", "+train.py"]
    assert not (work / "train.py").is_symlink() and (work / "train.py").read_text() == "v1"
    assert os.readlink(work / "data") == str(code / "data")  # the directory: a junction
    # New code replaces the copies; what a run put in the place of a code file (which would
    # run for every later run) is moved aside and the code's file copied in again.
    (code / "train.py").write_text("v2")
    (code / "old.py").unlink()
    (code / "eval.py").write_text("code's")
    (work / "eval.py").write_text("a run's")
    assert launcher.link_code(code, work) == ["-old.py", "!eval.py", "+eval.py", "+train.py"]
    assert (work / "train.py").read_text() == "v2"
    assert (work / "eval.py").read_text() == "code's"
    (aside,) = work.glob("eval.py.shadowed-*")
    assert aside.read_text() == "a run's"
    (work / "train.py").write_text("edited by a run")
    assert launcher.link_code(code, work) == ["!train.py", "+train.py"]
    assert (work / "train.py").read_text() == "v2"
    assert launcher.link_code(code, work) == []


def test_settings_files_are_read_as_systemd_reads_them(tmp_path, monkeypatch):
    env = tmp_path / "agent.env"
    env.write_text(
        "# Ansible managed\nSWEEP_FLEET_SWEEP=team/proj/abc123\n\nHTTPS_PROXY='http://u:p@proxy:3128'\n"
        "; a comment\nSWEEP_FLEET_START_DELAY=4.0\nnot a setting\n"
    )
    for name in ("SWEEP_FLEET_SWEEP", "HTTPS_PROXY", "SWEEP_FLEET_START_DELAY"):
        monkeypatch.delenv(name, raising=False)
    launcher.load_env_files([str(env)])
    assert os.environ["SWEEP_FLEET_SWEEP"] == "team/proj/abc123"
    assert os.environ["HTTPS_PROXY"] == "http://u:p@proxy:3128"
    with pytest.raises(launcher.SweepStateError, match="cannot read the settings"):
        launcher.load_env_files([str(tmp_path / "missing.env")])


def test_without_a_sweep_anywhere_the_launcher_stops_with_the_config_exit(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SWEEP_FLEET_SWEEP", raising=False)
    assert launcher.main(["state"]) == launcher.EXIT_CONFIG
    assert "no sweep" in capsys.readouterr().err
    assert launcher.main(["state", "--env-file", str(tmp_path / "missing.env")]) == launcher.EXIT_CONFIG


def test_new_code_reaches_a_running_agent_when_the_stamp_changes(tmp_path, monkeypatch):
    """deploy.yml touches the stamp; the launcher links again (the next run sees it)."""
    code, work, stamp = tmp_path / "code", tmp_path / "work", tmp_path / "code.stamp"
    code.mkdir()
    work.mkdir()
    (code / "train.py").write_text("v1")
    sup = launcher.Supervisor([], 30)
    sup.relink = (code, work, str(stamp))
    clock = [1000.0]
    monkeypatch.setattr(launcher.time, "monotonic", lambda: clock[0])
    sup._watch_code()  # the first look: no stamp yet, nothing to do
    assert list(work.iterdir()) == []
    stamp.write_text("1")
    clock[0] += 5
    sup._watch_code()  # looked at again only every 10 s
    assert list(work.iterdir()) == []
    clock[0] += 10
    sup._watch_code()
    assert sorted(p.name for p in work.iterdir() if p.name != launcher.COPIES) == [
        launcher.host.VENV_LINK,
        "train.py",
    ]
    assert os.readlink(work / launcher.host.VENV_LINK) == sys.prefix  # the default command's python
    (code / "eval.py").write_text("new")
    clock[0] += 10
    sup._watch_code()  # the stamp did not change: no look at the code
    assert not (work / "eval.py").exists()
    os.utime(stamp, (time.time() + 60,) * 2)
    clock[0] += 10
    sup._watch_code()
    assert (work / "eval.py").exists()
