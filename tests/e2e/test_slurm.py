"""The SLURM target on a real SLURM (Debian's slurmctld, slurmd and munge): a login node that
is also the controller, two compute nodes, and a directory all three share.

The cluster's user (no sudo) is the inventory's user for the login node; deploy.yml puts
the runtime, key, code and job script in wandb_slurm_dir and submits the agents as one job
array. The agents and their runs are the real wandb package; W&B is the stand-in.
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from fleet import FleetError
from fleet.slurm import CLUSTER_USER, start_cluster, write_inventory
from standin import StandIn
from support import REPO, TEST_API_KEY, changed_tasks, recap, run_playbook, wait_until

pytestmark = pytest.mark.fleet

SHARDS = REPO / "examples" / "shards"
PREEMPTIBLE = REPO / "examples" / "preemptible"
SHARD_VALUES = yaml.safe_load((SHARDS / "sweep.yaml").read_text())["parameters"]["data_path"]["values"]
SLURM_DIR = "/shared/sweep fleet"  # a space in the path, as users' paths have


class Cluster:
    def __init__(self, fleet, standin: StandIn, root: Path):
        self.fleet, self.standin = fleet, standin
        self.login, self.nodes = start_cluster(fleet)
        self.inventory = write_inventory(fleet, root / "hosts.ini", self.login)
        self.vars = root / "vars.yml"
        self.code = root / "code"
        shutil.copytree(PREEMPTIBLE, self.code)
        self.seen: set[tuple[str, str, str]] = set()  # (task, state, node) squeue showed
        self._watching = threading.Event()

    def write_vars(self, **values) -> None:
        self.vars.write_text(
            yaml.safe_dump(
                {
                    "wandb_credentials_api_key": TEST_API_KEY,
                    "wandb_credentials_base_url": self.standin.url,
                    "wandb_slurm_dir": SLURM_DIR,
                    **values,
                }
            )
        )

    def write_training_vars(self, name: str, lrs: list[float], epochs: int, epoch_seconds: float, **values):
        """The preemptible example over ``lrs``, its checkpoints on the shared filesystem (so
        that a run resumed by another task finds its checkpoint)."""
        self.write_vars(
            wandb_code_local_path=str(self.code),
            wandb_sweep_project="slurm",
            wandb_sweep_name=name,
            wandb_sweep_program="train.py",
            wandb_sweep_parameters={
                "lr": {"values": lrs},
                "epochs": {"value": epochs},
                "epoch_seconds": {"value": epoch_seconds},
                "checkpoint_dir": {"value": f"{SLURM_DIR}/checkpoints"},
            },
            **values,
        )

    def running(self, sweep, count: int) -> list[dict] | None:
        """The sweep's running runs once there are ``count`` of them."""
        now = [r for r in self.standin.records(sweep.id) if r["state"] == "running"]
        return now if len(now) == count else None

    def play(self, playbook: str, *args: str, check: bool = True):
        return run_playbook(REPO / playbook, self.inventory, "-e", f"@{self.vars}", *args, check=check)

    def sh(self, command: str, host=None) -> str:
        return self.fleet.ssh(host or self.login, command, user=CLUSTER_USER).stdout

    def squeue(self) -> list[tuple[str, str, str]]:
        out = self.sh("squeue --me --noheader --array --format='%i %T %N'")
        return [tuple([*line.split(), "", ""][:3]) for line in out.splitlines() if line.strip()]

    def logs(self, job: str = "") -> str:
        """The tasks' output (of one job, or of all)."""
        return self.sh(f"cat '{SLURM_DIR}'/logs/{job + '_' if job else ''}*.log 2>/dev/null || true")

    def watch(self):
        """Record every (task, state, node) squeue shows while the test runs."""

        def loop():
            while not self._watching.is_set():
                with contextlib.suppress(FleetError, subprocess.TimeoutExpired):  # a busy login node
                    self.seen |= set(self.squeue())
                time.sleep(1)

        self._watching.clear()
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return self

    def unwatch(self):
        self._watching.set()

    def wait_done(self, sweep, timeout: float) -> None:
        """The sweep finishes and the job leaves the queue."""
        try:
            self.standin.wait_for(
                lambda s: sweep.state == "FINISHED", timeout=timeout, what="the sweep to finish"
            )
            wait_until(lambda: self.squeue() == [], timeout=90, interval=1, what="squeue to be empty")
        except TimeoutError:
            pytest.fail(f"squeue: {self.squeue()}\n{self.logs()[-6000:]}")


@pytest.fixture(scope="module")
def cluster(make_fleet, tmp_path_factory):
    fleet = make_fleet(3, shared=True)
    standin = StandIn(host=fleet.gateway(), api_key=TEST_API_KEY).start()
    yield Cluster(fleet, standin, tmp_path_factory.mktemp("slurm"))
    standin.stop()


def sweep_named(cluster, name: str):
    (sweep,) = [s for s in cluster.standin.sweeps.values() if s.config.get("name") == name]
    return sweep


def test_a_wrong_slurm_input_is_refused_by_name_before_the_login_node_changes(cluster):
    cluster.write_vars(
        wandb_code_local_path=str(SHARDS),
        wandb_sweep_template=str(SHARDS / "sweep.yaml"),
        wandb_slurm_time_limit="2 days",
        wandb_slurm_signal_seconds=60,
    )
    result = cluster.play("deploy.yml", check=False)
    assert result.returncode != 0
    assert "wandb_slurm_time_limit '2 days' is not a SLURM time" in result.stdout
    assert "wandb_slurm_signal_seconds (60) must exceed wandb_slurm_term_timeout (120)" in result.stdout
    assert cluster.standin.sweeps == {}
    assert cluster.sh(f"ls -d '{SLURM_DIR}' 2>&1 || true").strip().endswith("No such file or directory")


def test_the_twelve_shards_run_once_each_as_a_job_array_and_leave_squeue_empty(cluster):
    cluster.write_vars(
        wandb_code_local_path=str(SHARDS),
        wandb_sweep_template=str(SHARDS / "sweep.yaml"),
        wandb_slurm_agents=3,
        wandb_slurm_time_limit="10",
    )
    started = time.monotonic()
    result = cluster.play("deploy.yml", "-vvv")
    assert TEST_API_KEY not in result.stdout + result.stderr, "the API key leaked into -vvv output"
    submitted = re.search(r"submitted job (\d+)", result.stdout)
    assert submitted, result.stdout[-3000:]
    job = submitted.group(1)
    sweep = sweep_named(cluster, "beauty-score-shards")

    # Every task runs; the key is on no command line and in no job's environment. A task is
    # RUNNING for SLURM from its batch script's start: its launcher (the agent's parent, with
    # the script's environment) starts a moment later, so the test waits for the launchers.
    def launchers() -> list[str]:
        """The environment of each task's launcher on the compute nodes, one entry each."""
        found = "".join(
            cluster.sh(
                "for p in $(pgrep -u researcher -f '[s]weep-fleet-agent run'); do "
                "tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null; echo; echo '<end>'; done",
                n,
            )
            for n in cluster.nodes
        )
        return [env for env in found.split("<end>") if env.strip()]

    wait_until(lambda: len([t for t in cluster.squeue() if t[1] == "RUNNING"]) == 3, timeout=90, interval=1)
    wait_until(lambda: len(launchers()) == 3, timeout=90, interval=1, what="the three tasks' launchers")
    envs = launchers()
    shown = cluster.sh(f"scontrol show job {job}; ps -eo args") + "".join(envs)
    assert all("NETRC=" in env for env in envs) and TEST_API_KEY not in shown
    cluster.wait_done(sweep, timeout=300)
    print(f"12 shards through SLURM (3 tasks on 2 nodes): {time.monotonic() - started:.1f}s, job {job}")

    scored = collections.Counter(re.findall(r"^scored (\S+):", cluster.logs(job), re.MULTILINE))
    assert scored == collections.Counter(SHARD_VALUES), "each shard scored exactly once"
    records = cluster.standin.records(sweep.id)
    assert {(r["state"], r["exitcode"]) for r in records} == {("finished", 0)}
    assert {r["agent_host"] for r in records} <= {n.name for n in cluster.nodes}
    # What the cluster's user owns on the shared filesystem, and who may read the key.
    modes = cluster.sh(f"stat -c '%U %a %n' '{SLURM_DIR}' '{SLURM_DIR}/credentials/netrc'")
    assert modes.splitlines() == [
        f"{CLUSTER_USER} 700 {SLURM_DIR}",
        f"{CLUSTER_USER} 600 {SLURM_DIR}/credentials/netrc",
    ]

    # A finished sweep: the next deploy changes nothing and submits nothing.
    again = cluster.play("deploy.yml")
    assert changed_tasks(again.stdout) == []
    assert recap(again.stdout)[cluster.login.name]["changed"] == 0
    assert "is finished: nothing submitted" in again.stdout
    assert cluster.squeue() == []


def test_a_time_limit_preempts_the_run_requeues_the_task_and_the_value_finishes(cluster):
    cluster.write_training_vars(
        "time-limited",
        [0.1, 0.01],
        epochs=30,
        epoch_seconds=3,
        wandb_slurm_agents=2,
        # SLURM sends USR1 30 s before the limit, or up to a minute earlier (sbatch(1),
        # --signal): here between 30 s and 90 s into the job. A task's run starts well within
        # 30 s and lasts 90 s, so each task has a run in its epochs when USR1 comes.
        wandb_slurm_time_limit="2",
        wandb_slurm_signal_seconds=30,
        wandb_slurm_term_timeout=10,
        wandb_slurm_max_requeues=5,
    )
    started = time.monotonic()
    cluster.watch()
    try:
        cluster.play("deploy.yml")
        sweep = sweep_named(cluster, "time-limited")
        cluster.wait_done(sweep, timeout=420)
    finally:
        cluster.unwatch()
    print(
        f"time-limited sweep through SLURM: {time.monotonic() - started:.1f}s; "
        f"squeue saw {sorted(cluster.seen)}"
    )

    logs = cluster.logs()
    requeued = re.findall(r"the time limit is near: job (\S+) requeued \(requeue (\d+)\)", logs)
    assert requeued, logs[-4000:]
    preempted = re.findall(
        r"preempted at epoch \d+: checkpoint saved to \S+ fleet/checkpoints/(\w+)\.json", logs
    )
    assert preempted, "a run was preempted before the time limit\n" + logs[-4000:]
    assert any(state == "PENDING" for _, state, _ in cluster.seen), "a requeued task waited in the queue"
    records = cluster.standin.records(sweep.id)
    finished = [r for r in records if r["state"] == "finished"]
    # Every value finished exactly once; a preempted run finished under its own id.
    assert sorted(r["params"]["lr"] for r in finished) == [0.01, 0.1]
    assert {r["run_id"] for r in finished} == set(preempted)  # each task's run
    assert {r["state"] for r in records} <= {"finished", "preempted"}
    print(f"requeues: {requeued}; preempted runs: {preempted}")


def test_a_preempt_stop_hands_the_runs_back_start_resumes_them_and_a_kill_leaves_no_process(cluster):
    cluster.write_training_vars(
        "preempted",
        [0.3, 0.2, 0.1, 0.05],
        epochs=30,
        epoch_seconds=1,
        wandb_slurm_agents=2,
        wandb_slurm_time_limit="10",
        wandb_slurm_term_timeout=10,
        wandb_slurm_signal_seconds=60,
    )
    job = re.search(r"submitted job (\d+)", cluster.play("deploy.yml").stdout).group(1)
    sweep = sweep_named(cluster, "preempted")

    first = cluster.standin.wait_for(
        lambda _: cluster.running(sweep, 2), timeout=120, what="both tasks to run a run"
    )
    stop = cluster.play("playbooks/stop.yml", "-e", "wandb_agent_stop_mode=preempt")
    assert "all ended" in stop.stdout and cluster.squeue() == []
    # Each run called mark_preempting() and exited: W&B requeues it (same id, same values).
    states = {r["run_id"]: r["state"] for r in cluster.standin.records(sweep.id)}
    assert {states[r["run_id"]] for r in first} == {"preempted"}, states
    assert "requeued" not in cluster.logs(job), "a stopped task requeued itself"

    start = cluster.play("playbooks/start.yml")
    again = re.search(r"submitted job (\d+)", start.stdout)
    assert again, start.stdout[-2000:]
    resumed = cluster.standin.wait_for(
        lambda _: {r["run_id"] for r in cluster.running(sweep, 2) or []} & {r["run_id"] for r in first},
        timeout=120,
        what="a preempted run to run again",
    )
    assert "resuming run" in cluster.logs(again.group(1))
    assert "submitted job" not in cluster.play("playbooks/start.yml").stdout, "queued: nothing more"

    kill = cluster.play("playbooks/stop.yml", "-e", "wandb_agent_stop_mode=kill")
    assert "all ended" in kill.stdout and cluster.squeue() == []

    # SLURM drops a killed job from squeue while its processes may still be exiting (under
    # the full suite's load one was seen as "[python]", its command line already gone): a
    # process that is left stays, one that exits is gone within seconds.
    def left() -> dict[str, str]:
        found = {
            n.name: cluster.sh(f"pgrep -u {CLUSTER_USER} -a python || true", n).strip() for n in cluster.nodes
        }
        return {name: procs for name, procs in found.items() if procs}

    try:
        cluster.standin.wait_for(lambda _: not left(), timeout=30, interval=1, what="no process of the jobs")
    except TimeoutError:
        pytest.fail(f"processes left on the nodes: {left()}")
    print(f"preempted {[r['run_id'] for r in first]}, resumed {sorted(resumed)}")


def test_status_shows_each_task_and_a_drain_stop_lets_the_running_runs_finish(cluster):
    cluster.write_training_vars(
        "drained",
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.05],
        epochs=8,
        epoch_seconds=2,
        wandb_slurm_agents=2,
        wandb_slurm_time_limit="10",
    )
    cluster.play("deploy.yml")
    sweep = sweep_named(cluster, "drained")
    running = cluster.standin.wait_for(
        lambda _: cluster.running(sweep, 2), timeout=120, what="both to run a run"
    )
    status = cluster.play("playbooks/status.yml").stdout
    for task in ("0", "1"):
        assert re.search(rf"\b{task}\s+\d+_{task}\s+RUNNING\s+sf-\S+", status), status
    assert any(r["run_id"] in status for r in running), status

    stop = cluster.play("playbooks/stop.yml", "-e", "wandb_agent_stop_mode=drain")
    assert "all ended" in stop.stdout
    assert cluster.squeue() == []
    # The runs that were running finished (none preempted or killed), and the drained
    # agents took no new run: values are left for a later start.
    records = cluster.standin.records(sweep.id)
    assert {r["run_id"] for r in running} <= {r["run_id"] for r in records if r["state"] == "finished"}
    assert {(r["state"], r["exitcode"]) for r in records} == {("finished", 0)}
    assert len(records) < 6 and sweep.state == "RUNNING", "no new run after the drain"
    assert "no task of job sweep-fleet is queued" in cluster.play("playbooks/status.yml").stdout

    # remove.yml cancels nothing more and takes the directory away.
    cluster.play("playbooks/remove.yml")
    assert cluster.sh(f"ls '{SLURM_DIR}' 2>&1 || true").strip().endswith("No such file or directory")
