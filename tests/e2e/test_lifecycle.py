"""The fleet's lifecycle over SSH against test hosts and the W&B API stand-in.

One fleet of three hosts lives through the tests of this module in order, as a user's
fleet would: status during a sweep, a rolling drain stop and a start, a preempt stop, a
kill stop, pause/resume/cancel, a rolling update to a new code ref, and removal. Each
scenario gets a sweep of its own. The code comes from a git repository (the preemptible
example plus tests/programs/leaky.py, whose worker process ignores SIGTERM).
"""

from __future__ import annotations

import collections
import itertools
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from standin import StandIn
from support import REPO, TEST_API_KEY, GitServer, git, recap, run_playbook, task_results, wait_until

pytestmark = pytest.mark.fleet

EXAMPLE = REPO / "examples" / "preemptible"
LEAKY = REPO / "tests" / "programs" / "leaky.py"
LRS = [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002]


class Lifecycle:
    """Inventory, code repository and playbook runs for the lifecycle fleet."""

    def __init__(self, fleet, standin: StandIn, server: GitServer, root: Path):
        self.fleet, self.standin = fleet, standin
        self.hosts = fleet.hosts()
        self.inventory = root / "inventory"
        (self.inventory / "group_vars").mkdir(parents=True)
        self.hosts_file = fleet.write_inventory(self.inventory / "hosts.ini")
        self.work = root / "code"
        shutil.copytree(EXAMPLE, self.work)
        shutil.copy(LEAKY, self.work / "leaky.py")
        git("init", "-q", "-b", "main", cwd=self.work)
        self.server = server
        self.refs = {}
        self.repo_url = None
        self.new_version("v1")
        self.sweep_vars: dict = {}

    def new_version(self, version: str) -> str:
        (self.work / "VERSION").write_text(version + "\n")
        git("add", ".", cwd=self.work)
        git("commit", "-q", "-m", f"code {version}", cwd=self.work)
        self.repo_url = self.server.publish(self.work, "lifecycle")
        self.refs[version] = git("rev-parse", "HEAD", cwd=self.work)
        return self.refs[version]

    def write_vars(self, **extra) -> None:
        settings = {
            "wandb_credentials_api_key": TEST_API_KEY,
            "wandb_credentials_base_url": self.standin.url,
            "wandb_runtime_uv_source": "controller",
            "wandb_code_source": "git",
            "wandb_code_git_repo": self.repo_url,
            "wandb_code_git_version": self.refs["v1"],
            "wandb_sweep_project": "lifecycle",
            "wandb_sweep_program": "leaky.py",
            "wandb_sweep_metric": {"name": "loss", "goal": "minimize"},
            "wandb_agent_stagger_seconds": 0.5,
            "wandb_agent_term_timeout": 20,
            "wandb_agent_restart_sec": 2,
            **self.sweep_vars,
            **extra,
        }
        (self.inventory / "group_vars" / "fleet.yml").write_text("---\n" + yaml.safe_dump(settings))

    def new_sweep(self, name: str, values: int, epochs: int, epoch_seconds: float, seeds: int = 1, **extra):
        """Deploy a sweep of its own for a scenario (values x seeds runs); return the stand-in's sweep."""
        self.sweep_vars = {
            "wandb_sweep_name": name,
            "wandb_sweep_parameters": {
                "lr": {"values": LRS[:values]},
                "seed": {"values": list(range(seeds))},
                "epochs": {"value": epochs},
                "epoch_seconds": {"value": epoch_seconds},
            },
        }
        self.write_vars(**extra)
        self.play(REPO / "deploy.yml")
        (sweep,) = [s for s in self.standin.sweeps.values() if s.config.get("name") == name]
        return sweep

    def online_run(self, sweep, host) -> dict:
        """A run of ``sweep`` on ``host`` that is online: it has called wandb.init(), after
        installing its SIGTERM handler."""
        return self.standin.wait_for(
            lambda s: next((r for r in running_on(s, sweep).get(host.name, []) if r["online"]), None),
            timeout=90,
            what=f"a run on {host.name}",
        )

    def busy_sweep(self, name: str, values: int, epochs: int, epoch_seconds: float, seeds: int = 1):
        """A sweep with a run going on every host: the running one of that name, or a new one."""
        found = [s for s in self.standin.sweeps.values() if s.config.get("name") == name]
        since = time.time()
        if not (found and found[-1].state == "RUNNING" and len(running_on(self.standin, found[-1])) == 3):
            found = [self.new_sweep(name, values, epochs, epoch_seconds, seeds)]
        sweep = found[-1]
        self.wait_run_on_every_host(sweep, since)
        return sweep

    def wait_run_on_every_host(self, sweep, since: float) -> None:
        """Wait until each host runs a run of ``sweep``; when that times out, fail with the
        stand-in's running runs, the agents' units and their journals since ``since`` (it
        timed out so once under load, in the fresh run of 458e6c5, with nothing to say why)."""
        try:
            self.standin.wait_for(
                lambda s: len(running_on(s, sweep)) == 3, timeout=180, what="a run on every host"
            )
        except TimeoutError as err:
            units = {h.name: self.unit(h, "ActiveState", "SubState", "Result") for h in self.hosts}
            journals = {h.name: [m for _t, m in self.journal(h, since)][-30:] for h in self.hosts}
            running = running_on(self.standin, sweep)
            pytest.fail(f"{err}\nrunning: {running}\nunits: {units}\njournals: {journals}")

    def play(self, playbook: Path, *args: str, inventory: Path | None = None, **kwargs):
        return run_playbook(playbook, inventory or self.hosts_file, *args, **kwargs)

    def hold_runs(self, sweep, attempts: int = 20) -> None:
        """SIGSTOP every host's run once each has one online, and exactly one attempt open at
        the stand-in (not a run that just ended while a new one was handed out)."""
        since = time.time()
        for _ in range(attempts):
            self.wait_run_on_every_host(sweep, since)
            for host in self.hosts:
                self.sh(host, "sudo pkill -STOP -f '[l]eaky.py --' || true")
            open_runs = collections.Counter(
                r["agent_host"] for r in records(self.standin, sweep) if r["end"] is None
            )
            running = running_on(self.standin, sweep)
            if all(open_runs[h.name] == 1 and len(running[h.name]) == 1 for h in self.hosts):
                return
            self.release_runs()
        raise AssertionError("no moment with one run on every host")

    def release_runs(self) -> None:
        for host in self.hosts:
            self.sh(host, "sudo pkill -CONT -f '[l]eaky.py --' || true")

    def stop_one(self, host, mode: str, *args: str) -> dict:
        """stop.yml on one host in the given mode; return its report of the stopped runs."""
        result = self.play(
            REPO / "playbooks" / "stop.yml",
            "-e",
            f"wandb_agent_stop_mode={mode}",
            "--limit",
            host.name,
            *args,
            json_output=True,
        )
        return stop_reports(result.json)[host.name]

    def sh(self, host, command: str) -> str:
        return self.fleet.ssh(host, command).stdout

    def wandb_processes(self, host) -> list[str]:
        out = self.sh(host, "ps -eo user:32=,pid=,args= | awk '$1 ~ /^wandb(-[0-9]+)?$/'")
        return [line for line in out.splitlines() if line.strip()]

    def unit(self, host, *props: str) -> dict[str, str]:
        out = self.sh(host, "systemctl show wandb-agent@1 " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, host, since: float) -> list[tuple[float, str]]:
        """(time, message) of the agent unit's journal entries since ``since``."""
        out = self.sh(host, f"sudo journalctl -u wandb-agent@1 -o json --no-pager --since=@{int(since) - 1}")
        entries = []
        for line in out.splitlines():
            entry = json.loads(line)
            message = entry.get("MESSAGE")
            if isinstance(message, list):
                message = bytes(message).decode(errors="replace")
            entries.append((int(entry["__REALTIME_TIMESTAMP"]) / 1e6, message or ""))
        return entries


def stopping(message: str) -> bool:
    """A journal message that marks the start of an agent's stop (a drain's SIGINT, or a stop)."""
    return "Sent signal SIGINT to main process" in message or message.startswith("Stopping ")


def records(standin: StandIn, sweep) -> list[dict]:
    return standin.records(sweep.id)


def outline(rs: list[dict]) -> list[tuple]:
    """What the status must agree with: which run is where, in which state."""
    return [(r["run_id"], r["agent_host"], r["state"]) for r in rs]


def running_on(standin: StandIn, sweep) -> dict[str, list[dict]]:
    busy = collections.defaultdict(list)
    for r in records(standin, sweep):
        if r["state"] == "running":
            busy[r["agent_host"]].append(r)
    return busy


def latest_agent(standin: StandIn, sweep, host: str):
    """The agent that registered last from a host for a sweep (None if none did)."""
    mine = [a for a in standin.agents.values() if a.sweep == sweep.path and a.host == host]
    return max(mine, key=lambda a: a.created, default=None)


def stop_reports(play_json: dict) -> dict[str, dict]:
    """Each host's "Report the stopped runs" message, from every batch of a serial play."""
    return {
        host: result["msg"] for host, result in task_results(play_json, "Report the stopped runs").items()
    }


def finished_once(standin: StandIn, sweep) -> None:
    """Every point of the sweep's grid finished (exit code 0) exactly once, nothing left running."""
    rs = records(standin, sweep)
    grid = sweep.config["parameters"]
    points = [(lr, seed) for lr in grid["lr"]["values"] for seed in grid["seed"]["values"]]
    finished = collections.Counter(
        (r["params"]["lr"], r["params"]["seed"])
        for r in rs
        if r["state"] == "finished" and r["exitcode"] == 0 and not r["deleted"]
    )
    assert finished == dict.fromkeys(points, 1), rs
    assert not [r for r in rs if r["state"] in ("running", "pending") and not r["deleted"]], rs


@pytest.fixture(scope="module")
def site(make_fleet, tmp_path_factory):
    fleet = make_fleet(3)
    root = tmp_path_factory.mktemp("lifecycle")
    # A run that never started (a drain's SIGINT met the heartbeat that handed it out) stays
    # pending until W&B's stale timeout: 30 s here, for speed (the runs report every second).
    standin = StandIn(host=fleet.gateway(), api_key=TEST_API_KEY, run_timeout=30).start()
    server = GitServer(root / "served", fleet.gateway())
    yield Lifecycle(fleet, standin, server, root)
    server.stop()
    standin.stop()


def test_status_equals_the_standins_records(site, tmp_path):
    sweep = site.busy_sweep("status", values=9, epochs=8, epoch_seconds=1.5, seeds=3)
    status_file = tmp_path / "status.json"
    # Every host's run is held still (SIGSTOP to its processes; wandb-core, in a session of
    # its own, goes on reporting to W&B), so that status.yml and the stand-in are compared at
    # one moment with a run on every host, not at whatever moment each host was read.
    site.hold_runs(sweep)
    try:
        before = time.time()
        out = site.play(
            REPO / "playbooks" / "status.yml", "-e", f"wandb_agent_status_file={status_file}"
        ).stdout
        after = time.time()
        report = json.loads(status_file.read_text())
        rs = records(site.standin, sweep)
    finally:
        site.release_runs()

    rows = {row["host"]: row for row in report["agents"]}
    assert sorted(rows) == sorted(h.name for h in site.hosts)
    for host in site.hosts:
        row = rows[host.name]
        assert row["active_state"] == "active" and row["sub_state"] == "running"
        mine = [r for r in rs if r["agent_host"] == host.name]
        running = {r["run_id"]: r["params"] for r in mine if r["end"] is None}
        assert len(running) == 1, (host.name, mine)
        assert {run["id"]: run["params"] for run in row["runs"]} == running, (host.name, row, mine)
        assert row["runs_ended"] == len([r for r in mine if r["end"] is not None]), (host.name, row, mine)
        assert row["since"] and "last_error" in row
    assert report["sweep"]["path"] == sweep.path
    assert report["sweep"]["state"] == "RUNNING"
    assert report["sweep"]["run_count_expected"] == 27
    states = collections.Counter(r["state"] for r in rs)
    assert {k: v for k, v in report["sweep"]["runs_by_state"].items() if v} == dict(states), (report, states)
    assert before < after
    # The table a person reads: a header, one line per agent, the sweep's progress and URL.
    assert "HOST" in out and "PARAMETERS" in out
    for host in site.hosts:
        assert host.name in out
    progress = report["sweep"]["runs_by_state"].get("finished", 0)
    assert f"{progress}/27 runs finished" in out and sweep.id in out


def test_rolling_drain_stop_then_start_completes_the_sweep(site):
    # Enough work that every host is still busy when the rolling stop reaches it.
    sweep = site.busy_sweep("status", values=9, epochs=8, epoch_seconds=1.5, seeds=3)
    checked = time.time()
    site.play(REPO / "playbooks" / "stop.yml", "--check")
    for host in site.hosts:
        assert not [m for _, m in site.journal(host, checked) if stopping(m)], "check mode stopped nothing"
        assert site.unit(host, "ActiveState")["ActiveState"] == "active"
    # A run held still on every host until the first drain has begun: that host's drain
    # waits on a run for certain. (Runs started together end together; a stop that reached
    # each host between two of its runs would drain none, and this test would prove nothing
    # about the report of drained runs.)
    site.hold_runs(sweep)
    began = time.time()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            stop = pool.submit(site.play, REPO / "playbooks" / "stop.yml", json_output=True)
            wait_until(
                lambda: (
                    stop.done()
                    or any(stopping(m) for h in site.hosts for t, m in site.journal(h, began) if t >= began)
                ),
                timeout=300,
                interval=0.5,
                what="the first drain",
            )
            site.release_runs()
            result = stop.result()
    finally:
        site.release_runs()

    # From the hosts' records: when each drain began (SIGINT) and when the unit went down.
    windows = {}
    for host in site.hosts:
        journal = site.journal(host, began)
        start = [t for t, m in journal if stopping(m)]
        end = [t for t, m in journal if "Deactivated successfully" in m or m.startswith("Stopped ")]
        assert end, f"{host.name}: the agent never went down\n{journal}"
        if not start:  # its agent ended on its own before its turn: the sweep ran out of work
            assert [m for _, m in journal if "Received exit command" in m], journal
            continue
        windows[host.name] = (start[0], end[-1])
    assert len(windows) == 3, windows  # 27 runs: every host still has work when its turn comes
    ordered = sorted(windows.values())
    for (_, prev_end), (next_start, _) in itertools.pairwise(ordered):
        assert next_start >= prev_end, f"two hosts were stopping at once: {windows}"

    reports = stop_reports(result.json)
    rs = records(site.standin, sweep)
    # A heartbeat answer on its way when the drain's SIGINT reaches an idle agent may hand
    # it one more run. Either the agent runs it to its end (the drain waits), or the signal
    # interrupts the heartbeat and the run never starts: W&B then marks it crashed and only
    # wandb_sweep_action=rerun runs its value again. At most one per agent, never more.
    late = collections.Counter()
    lost = []
    for host in site.hosts:
        drain_began = windows.get(host.name, (float("inf"),))[0]
        for r in rs:
            if r["agent_host"] == host.name and r["start"] > drain_began:
                late[r["agent_id"]] += 1
                if not r["online"] and r["state"] != "finished":
                    lost.append(r)
    assert all(n == 1 for n in late.values()), f"an agent took runs while draining: {late}"
    assert not [r for r in rs if r["state"] != "finished" and r not in lost], "every started run finished"
    for host in site.hosts:
        assert site.wandb_processes(host) == [], host.name
        assert site.unit(host, "ActiveState")["ActiveState"] == "inactive"
        report = reports[host.name]
        assert report["preempted"] == [] and report["killed"] == []
        finished_here = {r["run_id"] for r in rs if r["agent_host"] == host.name and r["state"] == "finished"}
        assert {run["id"] for run in report["drained"]} <= finished_here
    assert any(report["drained"] for report in reports.values()), reports

    site.play(REPO / "playbooks" / "start.yml")
    site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=300, what="the sweep to finish")
    if lost:  # the grid has completed: W&B's own rerun (delete, resume) keeps to this sweep
        site.play(
            REPO / "playbooks" / "sweep.yml",
            "-e",
            "wandb_sweep_action=rerun",
            "-e",
            "wandb_sweep_rerun_delete=true",
        )
        site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=180, what="the rerun to finish")
    finished_once(site.standin, sweep)


def test_preempted_runs_go_to_other_hosts_and_nothing_is_left(site):
    sweep = site.new_sweep("preempt", values=6, epochs=10, epoch_seconds=1)
    first = site.hosts[0]
    victim = site.online_run(sweep, first)
    report = site.stop_one(first, "preempt")
    assert [run["id"] for run in report["preempted"]] == [victim["run_id"]]
    assert site.wandb_processes(first) == [], "no run, agent or leaked worker is left"

    site.standin.wait_for(
        lambda s: any(
            r["run_id"] == victim["run_id"] and r["agent_host"] != first.name and r["state"] == "finished"
            for r in records(s, sweep)
        ),
        timeout=120,
        what="the preempted run to finish on another host",
    )
    attempts = [r for r in records(site.standin, sweep) if r["run_id"] == victim["run_id"]]
    assert attempts[0]["agent_host"] == first.name
    assert attempts[0]["preempting"] and attempts[0]["state"] == "preempted"
    assert attempts[0]["exitcode"] == 143, "the example's exit status after mark_preempting()"
    assert attempts[0]["params"] == attempts[-1]["params"]

    site.play(REPO / "playbooks" / "start.yml", "--limit", first.name)
    site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=180, what="the sweep to finish")
    finished_once(site.standin, sweep)
    assert len([r for r in records(site.standin, sweep) if r["state"] == "preempted"]) == 1


def test_a_drain_that_outlasts_its_timeout_preempts_the_runs_left(site):
    """A run longer than wandb_agent_drain_timeout: the drain waits that long, then the stop
    preempts the run (W&B marks it preempted: it is requeued) and the host ends stopped."""
    sweep = site.new_sweep("outlast", values=3, epochs=40, epoch_seconds=1)
    first = site.hosts[0]
    victim = site.online_run(sweep, first)
    report = site.stop_one(first, "drain", "-e", "wandb_agent_drain_timeout=3")
    assert [run["id"] for run in report["preempted"]] == [victim["run_id"]], report
    assert report["drained"] == [], report
    assert site.wandb_processes(first) == [], "no run, agent or leaked worker is left"
    attempts = [r for r in records(site.standin, sweep) if r["run_id"] == victim["run_id"]]
    assert attempts[0]["agent_host"] == first.name and attempts[0]["state"] == "preempted", attempts
    site.play(REPO / "playbooks" / "stop.yml", "-e", "wandb_agent_stop_mode=kill")


def test_kill_stop_leaves_no_process_of_the_service_user(site):
    sweep = site.new_sweep("control", values=9, epochs=6, epoch_seconds=1)
    second = site.hosts[1]
    site.standin.wait_for(
        lambda s: running_on(s, sweep).get(second.name), timeout=90, what=f"a run on {second.name}"
    )
    # The run and its worker (own session, ignores SIGTERM) are both up.
    wait_until(
        lambda: len([p for p in site.wandb_processes(second) if "leaky.py" in p]) >= 2,
        timeout=30,
        what="the run's worker",
    )
    report = site.stop_one(second, "kill")
    assert len(report["killed"]) == 1 and report["preempted"] == [] and report["drained"] == []
    assert site.wandb_processes(second) == []
    unit = site.unit(second, "ActiveState", "NRestarts")
    assert unit == {"ActiveState": "inactive", "NRestarts": "0"}


def test_pause_keeps_agents_idle_resume_continues_cancel_ends_them(site):
    # 45 runs: more than the hosts can finish between the resume and the cancel, however slow the
    # cancel's play is (a finished sweep cannot be canceled; W&B refuses it).
    sweep = site.busy_sweep("pause", values=9, epochs=6, epoch_seconds=1, seeds=5)
    # One host's agent is down (killed, its run never reports again): resume starts it too.
    site.stop_one(site.hosts[1], "kill")
    sweep_play = REPO / "playbooks" / "sweep.yml"
    site.play(sweep_play, "-e", "wandb_sweep_action=pause")
    assert sweep.state == "PAUSED"
    paused_at = time.time()
    # The run killed on the second host never reports again (W&B would mark it crashed later).
    up = {site.hosts[0].name, site.hosts[2].name}
    site.standin.wait_for(
        lambda s: not up & set(running_on(s, sweep)), timeout=60, what="the running runs to end"
    )
    # The agents that matter are each up host's latest; the second host's agent was killed.
    live = [latest_agent(site.standin, sweep, name) for name in sorted(up)]
    assert all(a is not None and not a.exited for a in live), "the agents of the two hosts still up"
    killed = [
        a for a in site.standin.agents.values() if a.sweep == sweep.path and a.host == site.hosts[1].name
    ]
    killed_beats = {a.id: a.heartbeats for a in killed}
    seen = {a.id: a.heartbeats for a in live}
    # Two more heartbeats from every live agent: each was asked for work twice and got none.
    site.standin.wait_for(
        lambda s: all(a.heartbeats >= seen[a.id] + 2 for a in live),
        timeout=30,
        what="heartbeats while paused",
    )
    assert {a.id: a.heartbeats for a in killed} == killed_beats, "the killed agent is gone"
    assert not [r for r in records(site.standin, sweep) if r["start"] > paused_at]
    for host in (site.hosts[0], site.hosts[2]):
        assert site.unit(host, "ActiveState")["ActiveState"] == "active", "agents stay up while paused"

    resumed_at = time.time()
    site.play(sweep_play, "-e", "wandb_sweep_action=resume")
    site.standin.wait_for(
        lambda s: [r for r in records(s, sweep) if r["start"] > resumed_at],
        timeout=60,
        what="a run after resume",
    )
    for host in site.hosts:  # resume started the agent that the kill test stopped, too
        assert site.unit(host, "ActiveState")["ActiveState"] == "active"

    starts_before = {h.name: site.unit(h, "NRestarts")["NRestarts"] for h in site.hosts}
    site.play(sweep_play, "-e", "wandb_sweep_action=cancel")
    assert sweep.state == "CANCELED"
    for host in site.hosts:
        wait_until(
            lambda host=host: site.unit(host, "ActiveState")["ActiveState"] == "inactive",
            timeout=60,
            what=f"{host.name}'s agent to end",
        )
    cancelled_at = time.time()
    # No restart loop: with RestartSec=2 a loop would restart each unit several times here.
    deadline = cancelled_at + 8
    while time.time() < deadline:
        for host in site.hosts:
            unit = site.unit(host, "ActiveState", "Result", "NRestarts")
            assert unit["ActiveState"] == "inactive", (host.name, unit)
            assert unit["Result"] == "success", (host.name, unit)
            assert unit["NRestarts"] == starts_before[host.name], (host.name, unit)
        time.sleep(1)
    for host in site.hosts:
        starts = [m for t, m in site.journal(host, cancelled_at) if m.startswith("Starting ")]
        assert starts == [], f"{host.name} restarted its agent after the cancel"
        assert site.wandb_processes(host) == []


def test_rolling_update_to_a_new_code_ref(site):
    # Enough work that runs are left when the first host comes back with the new code.
    deployed = time.time()
    sweep = site.new_sweep("update", values=9, epochs=5, epoch_seconds=1, seeds=2)
    site.wait_run_on_every_host(sweep, deployed)
    v2 = site.new_version("v2")
    began = time.time()
    update = site.play(REPO / "playbooks" / "update.yml", "-e", f"wandb_code_git_version={v2}")
    updated, seen = {}, {}
    for host in site.hosts:
        assert site.sh(host, "sudo cat /opt/sweep-fleet/code/VERSION").strip() == "v2"
        # The staged checkout began as a copy of the running one, so the fetch brought only
        # what v2 added: its HEAD's log still holds v1 (a fresh clone's would hold v2 alone).
        head_log = site.sh(host, "sudo git -C /opt/sweep-fleet/code reflog --format=%H").split()
        assert site.refs["v1"] in head_log and head_log[0] == v2, (host.name, head_log)
        journal = site.journal(host, began)
        # The drain's SIGINT (or the agent's own end, when the sweep ran out of work first).
        ended = [t for t, m in journal if stopping(m) or "Received exit command" in m]
        started = [t for t, m in journal if m.startswith("Started ")]
        seen[host.name] = [(t, m[:60]) for t, m in journal if t in ended or t in started]
        assert ended, f"{host.name} was neither drained nor done\n{journal}"
        if not started:
            assert sweep.state == "FINISHED", f"{host.name} was not started again\n{journal}"
        updated[host.name] = (ended[0], started[-1] if started else float("inf"))
    assert any(restarted < float("inf") for _, restarted in updated.values()), (
        began,
        seen,
        update.stdout[-6000:],
    )
    # One host at a time (serial 1): each host's window, from its drain to its restart, ends
    # before the next one's begins.
    windows = sorted(updated.values())
    for (_, prev_end), (next_start, _) in itertools.pairwise(windows):
        assert next_start >= prev_end, f"two hosts were being updated at once: {updated}"

    site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=240, what="the sweep to finish")
    finished_once(site.standin, sweep)
    rs = records(site.standin, sweep)
    in_drain = collections.Counter()
    for r in rs:
        drain_began, restarted = updated[r["agent_host"]]
        if r["start"] >= restarted:
            assert r["tags"] == ["code-v2"], r
        elif r["start"] < drain_began:
            assert r["tags"] == ["code-v1"], r
        else:
            # The heartbeat answer in flight when the drain's SIGINT came may hand the agent
            # one more run: it runs the old code and the drain waits for its end.
            in_drain[r["agent_id"]] += 1
            assert r["tags"] == ["code-v1"] and r["end"] is not None and r["end"] <= restarted, (
                f"a run started on {r['agent_host']} while it was being updated: {r}"
            )
    assert all(n == 1 for n in in_drain.values()), f"an agent took runs after its drain began: {in_drain}"
    assert any(r["tags"] == ["code-v2"] for r in rs)


def finished_once_in_all(standin: StandIn, sweeps: list, values: list) -> None:
    """Across a sweep and those that follow it: each value finished (exit 0) exactly once."""
    rs = [r for sweep in sweeps for r in records(standin, sweep) if not r["deleted"]]
    finished = collections.Counter(
        r["params"]["lr"] for r in rs if r["state"] == "finished" and r["exitcode"] == 0
    )
    assert finished == dict.fromkeys(values, 1), rs
    assert not [r for r in rs if r["state"] in ("running", "pending", "preempted")], rs


def test_rerun_runs_the_values_whose_runs_failed_exactly_once_more_and_deletes_nothing(site):
    """W&B never runs a grid value again whose run crashed or failed; wandb_sweep_action=rerun
    does, in a new sweep seeded with the finished runs: a run that died before wandb.init()
    (crashed: W&B has no word from it) and one that ended with exit code 3 after it (failed)."""
    crashing, failing = LRS[1], LRS[3]
    sweep = site.new_sweep(
        "rerun",
        values=6,
        epochs=1,
        epoch_seconds=0.5,
        wandb_agent_environment={"LEAKY_FAIL_LR": str(crashing), "LEAKY_FAIL_AFTER_INIT_LR": str(failing)},
    )
    site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=180, what="the sweep to finish")
    for host in site.hosts:  # each agent learns of the end at its next heartbeat
        wait_until(
            lambda host=host: site.unit(host, "ActiveState")["ActiveState"] == "inactive",
            timeout=60,
            what=f"{host.name}'s agent to end with the sweep",
        )
    failed = sorted(
        (r for r in records(site.standin, sweep) if r["state"] != "finished"), key=lambda r: r["params"]["lr"]
    )
    assert sorted((r["state"], r["params"]["lr"]) for r in failed) == sorted(
        [("crashed", crashing), ("failed", failing)]
    ), failed
    site.write_vars()  # the setup fixed
    site.play(REPO / "deploy.yml")
    # Check mode names the runs whose values would run again, and changes nothing.
    planned = " ".join(
        site.play(
            REPO / "playbooks" / "sweep.yml", "-e", "wandb_sweep_action=rerun", "--check"
        ).stdout.split()
    )
    assert "Would run again the values of 2 run(s):" in planned, planned
    assert all(r["run_id"] in planned for r in failed)
    named = [s for s in site.standin.sweeps.values() if s.config.get("name") == "rerun"]
    assert named == [sweep] and sweep.state == "FINISHED"
    rerun = time.time()
    site.play(REPO / "playbooks" / "sweep.yml", "-e", "wandb_sweep_action=rerun")
    (new,) = [s for s in site.standin.sweeps.values() if s.config.get("name") == "rerun" and s is not sweep]
    assert new.description == f"sweep-fleet: rerun of {sweep.path}" and new.config == sweep.config
    site.standin.wait_for(lambda s: new.state == "FINISHED", timeout=120, what="the rerun's sweep to finish")
    again = records(site.standin, new)
    assert sorted(r["params"]["lr"] for r in again) == sorted([crashing, failing])
    assert all(r["start"] > rerun for r in again)
    assert not [r for r in site.standin.assignments if r.deleted], "nothing was deleted"
    finished_once_in_all(site.standin, [sweep, new], LRS[:6])


def test_a_sweep_changed_while_its_runs_run_preempts_none_and_runs_each_value_once(site):
    """Values added while every host runs one: the running runs finish (none is preempted),
    then each agent moves to the new sweep, which runs only the added values."""
    old = site.new_sweep("grow", values=3, epochs=12, epoch_seconds=2)
    site.standin.wait_for(lambda s: len(running_on(s, old)) == 3, timeout=90, what="a run on every host")
    site.sweep_vars["wandb_sweep_parameters"]["lr"]["values"] = LRS[:6]
    site.write_vars()
    began = time.time()
    result = site.play(REPO / "deploy.yml")
    (new,) = [s for s in site.standin.sweeps.values() if s.config.get("name") == "grow" and s is not old]
    assert f"it follows {old.path} (PAUSED, " in " ".join(result.stdout.split()), result.stdout
    site.standin.wait_for(
        lambda s: new.state == "FINISHED" and all(r["end"] for r in records(s, old)),
        timeout=240,
        what="the old runs and the new sweep to finish",
    )
    assert sorted(r["params"]["lr"] for r in records(site.standin, new)) == sorted(LRS[3:6])
    assert [r["state"] for r in records(site.standin, old)] == ["finished"] * 3, "no run was preempted"
    for host in site.hosts:
        messages = [m for _, m in site.journal(host, began)]
        assert not [m for m in messages if stopping(m) or "preempted at epoch" in m], messages
        assert [m for m in messages if "the fleet moved to a new sweep" in m], messages
    finished_once_in_all(site.standin, [old, new], LRS[:6])
    # status.yml names the sweep it follows, which is stopped now that nothing of it runs.
    status = " ".join(site.play(REPO / "playbooks" / "status.yml").stdout.split())
    assert f"it follows sweep {old.path}: FINISHED" in status, status
    assert old.state == "FINISHED"


def test_remove_leaves_nothing_behind(site):
    site.new_sweep("remove", values=3, epochs=1, epoch_seconds=0.5)
    retired, *kept = site.hosts
    uids = {host.name: site.sh(host, "id -u wandb-1").strip() for host in site.hosts}
    # The retired host has left the fleet group: the inventory names it in a group of its own.
    inventory = site.fleet.write_inventory(site.inventory / "hosts.ini", hosts=kept)
    retired_group = site.fleet.write_inventory(
        site.inventory / "retired.ini", hosts=[retired], group="retired"
    )
    inventory.write_text(inventory.read_text() + "\n" + retired_group.read_text())
    retired_group.unlink()
    first = site.play(
        REPO / "playbooks" / "remove.yml", "-e", "sweep_fleet_hosts=retired", inventory=inventory
    )
    assert sorted(recap(first.stdout)) == [retired.name]
    site.play(REPO / "playbooks" / "remove.yml", inventory=inventory)
    for host in site.hosts:
        leftovers = site.sh(
            host,
            "systemctl list-units --all --plain --no-legend 'wandb-agent@*'; "
            "ls -d /etc/systemd/system/wandb-agent@.service /etc/systemd/system/wandb-agent@*.service.d "
            "/opt/sweep-fleet /etc/sweep-fleet "
            "/var/lib/sweep-fleet /var/cache/sweep-fleet /run/sweep-fleet /usr/local/bin/uv 2>/dev/null; "
            "getent passwd wandb wandb-1; getent group wandb wandb-1; "
            f"ps -eo uid=,args= | awk '$1 == {uids[host.name]}'; true",
        )
        assert leftovers.strip() == "", f"{host.name}:\n{leftovers}"
    again = site.play(REPO / "playbooks" / "remove.yml", inventory=inventory).stdout
    assert {counts["changed"] for counts in recap(again).values()} == {0}, again
