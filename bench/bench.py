"""make bench: deploy.yml against a hand-written baseline, on the test fleet.

For each fleet size N (BENCH_SIZES, default 1,3,6,12,24), BENCH_REPS times (default 3; sizes
above 12 BENCH_BIG_REPS times, default 1):

* floor: bench/floor.yml on N fresh hosts, three times (their median): Ansible's own cost
  for the tasks of a warm deploy, none doing any work (one module call per host);
* baseline: bench/baseline.sh on the same hosts (the same installs and unit, parallel ssh);
* cold, wheelhouse: deploy.yml on N fresh hosts with the wheelhouse (its controller cache
  empty), to weigh it;
* cold: deploy.yml on N fresh hosts with the defaults (wandb_runtime_wheelhouse=false: each
  host downloads from the index itself); then, once an agent of each host has reported to
  the stand-in (the agents' start no longer shares the cores), warm: deploy.yml again on
  these hosts, nothing changed, three times (their median);
* add one: a host more in the inventory, deploy.yml --limit to it;
* update: a change to the code, playbooks/update.yml (staged on every host at once, then
  rolling, one host at a time);
* calls (the smallest N, once): the commands deploy.yml sends to one more fresh host, cold
  and then warm (-vvv; Ansible's interpreter discovery not counted).

Every agent joins one existing, paused sweep of the W&B API stand-in (so no run competes
for the cores). The hosts, and the controller when it makes the wheelhouse, fetch from the
package index through a proxy that counts the bytes. Medians, a markdown table, a PNG plot
and, at 12 hosts (where the speed goals are set) and at the largest N, profile_tasks output
of a cold and a warm deploy and of the update go to bench/results/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fleet import Fleet, build_image  # noqa: E402
from standin import StandIn  # noqa: E402
from support import TEST_API_KEY, VENV_BIN, VERSIONS, AuthProxy, ansible_env, round_trips  # noqa: E402

RESULTS = REPO / "bench" / "results"
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "1,3,6,12,24").split(",")]
REPS = int(os.environ.get("BENCH_REPS", "3"))
BIG_REPS = int(os.environ.get("BENCH_BIG_REPS", "1"))
# Warm runs per measurement (their median is the measurement): a few seconds each.
WARM_REPS = 3
SHARDS = REPO / "examples" / "shards"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


class Run:
    """One fleet, its stand-in, proxy, inventory and code, for one measurement series."""

    def __init__(self, size: int, image: str, root: Path, **settings):
        self.name = f"b{uuid.uuid4().hex[:6]}"
        self.root = root / self.name
        self.fleet = Fleet(self.name, self.root / "fleet")
        self.fleet.up(size, image=image)
        self.standin = StandIn(host=self.fleet.gateway(), api_key=TEST_API_KEY).start()
        self.proxy = AuthProxy(self.fleet.gateway())
        sweep = self.standin.create_sweep(
            {"program": "main.py", "method": "grid", "parameters": {"data_path": {"values": ["a", "b"]}}},
            project="bench",
        )
        self.standin.set_state(sweep.id, "PAUSED")
        self.sweep = sweep
        self.code = self.root / "code"
        shutil.copytree(SHARDS, self.code)
        self.inventory = self.root / "inventory"
        (self.inventory / "group_vars").mkdir(parents=True)
        self.write_inventory()
        (self.inventory / "group_vars" / "fleet.yml").write_text(
            yaml.safe_dump(
                {
                    "wandb_credentials_api_key": TEST_API_KEY,
                    "wandb_credentials_base_url": self.standin.url,
                    "wandb_runtime_uv_source": "controller",
                    "wandb_runtime_environment": {"HTTPS_PROXY": f"http://{self.proxy.url_host}"},
                    "wandb_code_local_path": str(self.code),
                    "wandb_sweep_id": sweep.path,
                    "wandb_agent_stagger_seconds": 0,
                    "wandb_runtime_wheelhouse_cache": str(self.root / "wheelhouse"),
                    **settings,
                }
            )
        )

    def write_inventory(self) -> Path:
        return self.fleet.write_inventory(self.inventory / "hosts.ini")

    def play(self, playbook: str, *args: str, profile: Path | None = None, every_task: bool = False) -> float:
        # The controller's downloads (the wheelhouse) are counted too.
        env = ansible_env(HTTPS_PROXY=f"http://{self.proxy.url_host}")
        if profile or every_task:
            env |= {
                "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all" if every_task else "40",
            }
        started = time.monotonic()
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory / "hosts.ini"), playbook, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{playbook} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
        self.last_output = proc.stdout
        if profile:
            profile.write_text(proc.stdout[proc.stdout.rfind("PLAY RECAP") :])
        return took

    def update_code(self, profile: Path | None = None) -> tuple[float, float]:
        """A change to the code, then playbooks/update.yml: its seconds, and the drains' of them."""
        (self.code / "CHANGED").write_text(f"{time.time()}\n")
        took = self.play("playbooks/update.yml", profile=profile, every_task=True)
        return took, drain_seconds(self.last_output)

    def settle(self, hosts: int) -> None:
        """Wait until an agent on each of ``hosts`` hosts has sent the stand-in a heartbeat: the
        agents a deploy started have imported wandb and registered, and no longer compete with
        the next measurement for the cores they share with the controller (on a real fleet they
        run on their own machines)."""
        self.standin.wait_for(
            lambda s: len({a.host for a in s.agents.values() if a.heartbeats}) >= hosts,
            timeout=300,
            what=f"an agent's heartbeat from each of {hosts} hosts",
        )

    def baseline(self) -> float:
        started = time.monotonic()
        proc = subprocess.run(
            [
                str(REPO / "bench" / "baseline.sh"),
                str(self.inventory / "hosts.ini"),
                str(VENV_BIN / "uv"),
                str(self.code),
                self.standin.url,
                self.sweep.path,
                VERSIONS["wandb_runtime_wandb_version"],
            ],
            input=TEST_API_KEY + "\n",
            env=os.environ | {"HTTPS_PROXY": f"http://{self.proxy.url_host}"},
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"baseline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return took

    def down(self) -> None:
        self.proxy.stop()
        self.standin.stop()
        self.fleet.down()


# The rolling update's waits for the agents' runs (the drain itself): the update's target is a
# multiple of a warm run plus these. A staged host's drain is in its rollout (the report's
# drain_seconds: until its agents were stopped); a host deployed in full is drained by tasks.
DRAIN_TASKS = ("wandb_agent : Wait for the running runs to finish", "wandb_agent : Stop the agents (running")
TASK_TIME_RE = re.compile(r"^(.*?) -+ (\d+\.\d+)s$", re.MULTILINE)
ROLLOUT_DRAIN_RE = re.compile(r"^\s+drain_seconds: '?(\d+(?:\.\d+)?)'?$", re.MULTILINE)


def drain_seconds(output: str) -> float:
    """The seconds the drains took, over every host (the rollouts' reports, and profile_tasks'
    recap of each batch for the drain tasks)."""
    recap = output[output.find("TASKS RECAP") :]
    tasks = sum(float(took) for name, took in TASK_TIME_RE.findall(recap) if name.startswith(DRAIN_TASKS))
    return tasks + sum(float(took) for took in ROLLOUT_DRAIN_RE.findall(output))


def measure(size: int, image: str, root: Path, profile: bool, count_calls: bool = False) -> dict:
    out: dict = {}
    run = Run(size, image, root)
    try:
        out["floor"] = statistics.median(run.play("bench/floor.yml") for _ in range(WARM_REPS))
        out["baseline"] = run.baseline()
        out["baseline_bytes"] = run.proxy.bytes_in
    finally:
        run.down()
    run = Run(size, image, root, wandb_runtime_wheelhouse=True)
    try:
        out["cold_wheelhouse"] = run.play("deploy.yml")
        out["cold_wheelhouse_bytes"] = run.proxy.bytes_in
    finally:
        run.down()
    run = Run(size, image, root)
    try:
        prof = RESULTS / f"profile-cold-{size}.txt" if profile else None
        out["cold"] = run.play("deploy.yml", profile=prof)
        out["cold_bytes"] = run.proxy.bytes_in
        run.settle(size)
        prof = RESULTS / f"profile-warm-{size}.txt" if profile else None
        warm = [run.play("deploy.yml", profile=prof if rep == 0 else None) for rep in range(WARM_REPS)]
        out["warm"] = statistics.median(warm)
        (new,) = run.fleet.add(1, image=image)
        run.write_inventory()
        out["add_one"] = run.play("deploy.yml", "--limit", new.name)
        prof = RESULTS / f"profile-update-{size}.txt" if profile else None
        out["update"], out["drains"] = run.update_code(profile=prof)
        if count_calls:  # commands sent to one more fresh host, cold then warm (not timed)
            (new,) = run.fleet.add(1, image=image)
            run.write_inventory()
            for key in ("calls_cold", "calls_warm"):
                run.play("deploy.yml", "--limit", new.name, "-vvv")
                out[key] = round_trips(run.last_output)[new.ip]
    finally:
        run.down()
    return out


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    image = build_image(log=say)
    samples: dict[int, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="sweep-fleet-bench-") as tmp:
        for size in SIZES:
            reps = REPS if size <= 12 else BIG_REPS
            for rep in range(reps):
                say(f"N={size}, repetition {rep + 1}/{reps}")
                sample = measure(
                    size,
                    image,
                    Path(tmp),
                    profile=size in (12, max(SIZES)) and rep == 0,
                    count_calls=rep == 0 and size == min(SIZES),
                )
                say(
                    f"N={size}: "
                    + ", ".join(f"{k}={v:.1f}" for k, v in sample.items() if not k.endswith("bytes"))
                )
                samples.setdefault(size, []).append(sample)
    medians = {
        size: {key: statistics.median(s[key] for s in runs if key in s) for key in runs[0]}
        for size, runs in samples.items()
    }
    stamp = time.strftime("%Y-%m-%d %H:%M")
    (RESULTS / "results.json").write_text(
        json.dumps({"when": stamp, "reps": REPS, "samples": samples}, indent=1)
    )
    runs = {size: len(samples[size]) for size in samples}
    (RESULTS / "table.md").write_text(table(medians, stamp, runs))
    plot(medians, RESULTS / "plot.png")
    print((RESULTS / "table.md").read_text())
    return 0


def table(medians: dict, stamp: str, runs: dict) -> str:
    one = medians.get(1, {})
    lines = [
        f"Medians, {stamp}, on 2 cores shared with the hosts "
        "(seconds; MB fetched from the package index; runs: how many runs each row's medians are of).",
        "",
        "| hosts | runs | baseline script | deploy.yml cold | ratio | cold, wheelhouse | ratio "
        "| warm, no change | warm / 1-host warm | Ansible floor | floor / 1-host floor "
        "| one more host | / 1-host cold | rolling update "
        "| of it drains | (update - drains) / warm | index MB (cold / wheelhouse / baseline) |",
        "|" + " --- |" * 17,
    ]
    for size, m in sorted(medians.items()):
        warm_ratio = f"{m['warm'] / one['warm']:.1f}x" if one else "-"
        floor_ratio = f"{m['floor'] / one['floor']:.1f}x" if one else "-"
        add_ratio = f"{m['add_one'] / one['cold']:.2f}x" if one else "-"
        lines.append(
            f"| {size} | {runs[size]} | {m['baseline']:.1f} | {m['cold']:.1f} | "
            f"{m['cold'] / m['baseline']:.1f}x | {m['cold_wheelhouse']:.1f} | "
            f"{m['cold_wheelhouse'] / m['baseline']:.1f}x | "
            f"{m['warm']:.1f} | {warm_ratio} | {m['floor']:.1f} | {floor_ratio} | "
            f"{m['add_one']:.1f} | {add_ratio} | "
            f"{m['update']:.1f} | {m.get('drains', 0):.1f} | "
            f"{(m['update'] - m.get('drains', 0)) / m['warm']:.1f}x | "
            f"{m['cold_bytes'] / 1e6:.1f} / {m['cold_wheelhouse_bytes'] / 1e6:.1f} / "
            f"{m['baseline_bytes'] / 1e6:.1f} |"
        )
    calls = [m for m in medians.values() if "calls_cold" in m]
    if calls:
        lines += [
            "",
            "Commands deploy.yml sends to a host (Ansible's interpreter discovery not counted): "
            f"{calls[0]['calls_cold']:.0f} on a fresh host, {calls[0]['calls_warm']:.0f} when nothing "
            "changed.",
        ]
    return "\n".join(lines) + "\n"


def plot(medians: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(medians)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, label in (
        ("baseline", "hand-written script"),
        ("cold", "deploy.yml, fresh hosts"),
        ("cold_wheelhouse", "deploy.yml, fresh hosts, wheelhouse"),
        ("warm", "deploy.yml, no change"),
        ("floor", "Ansible floor (bench/floor.yml)"),
        ("add_one", "one more host (--limit)"),
        ("update", "rolling update.yml"),
    ):
        ax.plot(sizes, [medians[n][key] for n in sizes], marker="o", label=label)
    ax.set_xlabel("hosts")
    ax.set_ylabel("seconds (median)")
    ax.set_xticks(sizes)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("sweep-fleet deploy time against fleet size (2 cores)")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
