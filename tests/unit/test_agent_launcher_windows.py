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

AGENT, RUN, CORE, GRANDCHILD = 100, 200, 300, 400


class FakeAgent:
    """A ``subprocess.Popen`` of the agent: ends when killed."""

    pid = AGENT

    def __init__(self, world):
        self.world = world
        self.code = None

    def poll(self):
        return self.code

    def kill(self):
        self.world.calls.append(("kill agent",))
        self.code = 1
        self.world.job.discard(AGENT)


class World:
    """The Windows layer: a job's processes, their parents and names, and what was done."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.job = {AGENT, RUN, CORE, GRANDCHILD}
        self.table = {
            AGENT: (1, "python.exe"),
            RUN: (AGENT, "python.exe"),
            CORE: (AGENT, "wandb-core.exe"),
            GRANDCHILD: (RUN, "python.exe"),
        }
        world = self

        class Job:
            def add(self, process):
                world.calls.append(("add", process.pid))

            def pids(self):
                return sorted(world.job)

            def terminate(self):
                world.calls.append(("terminate job",))
                world.job.clear()

        self.Job = Job

    def processes(self):
        return dict(self.table)

    def runs_of(self, agent, in_job, table):
        return sweep_fleet_windows.runs_of(agent, in_job, table)

    def ctrl_break(self, pid):
        self.calls.append(("ctrl-break", pid))

    def junction(self, target, link):
        os.symlink(target, link)  # what a junction looks like to os.readlink


@pytest.fixture
def world(monkeypatch):
    world = World()
    monkeypatch.setattr(launcher, "WINDOWS", True)
    monkeypatch.setattr(launcher, "windows", world)
    return world


def supervisor(world, tmp_path, timeout=30.0):
    sup = launcher.Supervisor(["wandb", "agent", "e/p/s"], timeout, str(tmp_path / "stop"))
    sup.job = world.Job()
    sup.agent = FakeAgent(world)
    return sup


def write_stop(tmp_path: Path, mode: str) -> None:
    (tmp_path / "stop").write_text(mode)
    later = time.time() + 5
    os.utime(tmp_path / "stop", (later, later))


def test_the_runs_are_the_agents_children_in_the_job_but_not_wandb_core(world):
    assert sweep_fleet_windows.runs_of(AGENT, sorted(world.job), world.table) == [RUN]
    assert sweep_fleet_windows.runs_of(AGENT, [AGENT, CORE], world.table) == []


def test_nssms_ctrl_c_without_a_stop_file_is_a_preempt(world, tmp_path):
    sup = supervisor(world, tmp_path)
    sup.on_signal(signal.SIGINT, None)
    assert (sup.stop_asked, sup.drain_asked, sup.kill_asked) == (True, False, False)
    sup.step()
    sup.step()
    # The agent takes no new run; the run (its own process group) gets Ctrl-Break once.
    assert world.calls == [("kill agent",), ("ctrl-break", RUN)]
    assert ("terminate job",) not in world.calls  # it has its --term-timeout


def test_a_run_still_alive_after_the_timeout_is_killed_with_the_whole_job(world, tmp_path):
    sup = supervisor(world, tmp_path, timeout=0)
    sup.on_signal(signal.SIGINT, None)
    sup.step()
    assert world.calls[-1] == ("terminate job",)
    assert world.job == set()  # the grandchild holding GPU memory too


def test_a_drain_in_the_stop_file_ends_the_agent_and_waits_for_the_run(world, tmp_path, monkeypatch):
    sup = supervisor(world, tmp_path)
    write_stop(tmp_path, "drain")
    sup.step()
    assert sup.drain_asked and not sup.stop_asked
    assert world.calls == [("kill agent",)]
    assert sup.agent.poll() is not None and sup.runs() == [RUN]  # the run goes on

    def run_ends(_seconds):
        world.calls.append(("waited",))
        world.job.difference_update({RUN, GRANDCHILD})  # and ends by itself

    monkeypatch.setattr(launcher.time, "sleep", run_ends)
    assert sup.wait() == 1
    assert world.calls == [("kill agent",), ("waited",)]  # not before the run ended
    assert ("ctrl-break", RUN) not in world.calls and ("terminate job",) not in world.calls


def test_kill_in_the_stop_file_ends_the_job_at_once(world, tmp_path):
    sup = supervisor(world, tmp_path)
    write_stop(tmp_path, "kill")
    sup.on_signal(signal.SIGINT, None)
    sup.step()
    assert world.calls == [("terminate job",)]


def test_a_stop_file_older_than_the_launcher_is_not_a_request(world, tmp_path):
    (tmp_path / "stop").write_text("drain")
    earlier = time.time() - 60
    os.utime(tmp_path / "stop", (earlier, earlier))
    sup = supervisor(world, tmp_path)
    sup.step()
    assert not sup.drain_asked and world.calls == []
    (tmp_path / "stop").write_text("nonsense")
    os.utime(tmp_path / "stop", (time.time() + 5,) * 2)
    assert sup.requested() is None


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
    assert [p.name for p in work.iterdir() if p.name != launcher.COPIES] == ["train.py"]
    (code / "eval.py").write_text("new")
    clock[0] += 10
    sup._watch_code()  # the stamp did not change: no look at the code
    assert not (work / "eval.py").exists()
    os.utime(stamp, (time.time() + 60,) * 2)
    clock[0] += 10
    sup._watch_code()
    assert (work / "eval.py").exists()
