"""`make demo`: deploy.yml on a local fleet against the W&B API stand-in.

Brings up 3 test hosts (kept until `make demo-down`), serves the stand-in where the
hosts reach it, writes an inventory as a user would, runs the real deploy.yml with the
users' 12-shard sweep, follows the sweep to its end, and prints which host and agent ran
which shard.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

import yaml

from fleet import Fleet, FleetError
from standin import StandIn
from support import REPO, TEST_API_KEY, VENV_BIN, ansible_env

SHARDS = REPO / "examples" / "shards"
INVENTORY = REPO / "inventory" / "demo"
HOSTS = int(os.environ.get("DEMO_HOSTS", "3"))


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def main() -> int:
    started = time.monotonic()
    fleet = Fleet("demo", REPO / ".cache" / "fleet" / "demo")
    say(f"bringing up {HOSTS} test hosts (fleet 'demo')")
    try:
        hosts = fleet.up(HOSTS)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for host in hosts:
        print(f"    {host.name:<12} {host.ip}")

    with StandIn(host=fleet.gateway(), api_key=TEST_API_KEY) as standin:
        say(f"W&B API stand-in at {standin.url}")
        fleet.write_inventory(INVENTORY / "hosts.ini", hosts)
        sweep = yaml.safe_load((SHARDS / "sweep.yaml").read_text())
        (INVENTORY / "group_vars").mkdir(parents=True, exist_ok=True)
        settings = INVENTORY / "group_vars" / "fleet.yml"
        settings.write_text(
            "---\n# Written by `make demo`: the stand-in's test key, not a real one.\n"
            + yaml.safe_dump(
                {
                    "wandb_credentials_api_key": TEST_API_KEY,
                    "wandb_credentials_base_url": standin.url,
                    "wandb_runtime_uv_source": "controller",
                    "wandb_code_local_path": str(SHARDS),
                    "wandb_sweep_project": sweep["project"],
                    "wandb_sweep_name": sweep["name"],
                    "wandb_sweep_program": sweep["program"],
                    "wandb_sweep_metric": sweep["metric"],
                    "wandb_sweep_parameters": sweep["parameters"],
                    "wandb_agent_stagger_seconds": 0.5,
                    "wandb_agent_environment": {"SHARD_SECONDS": "1"},
                },
                sort_keys=False,
            )
        )
        settings.chmod(0o600)
        say(f"ansible-playbook -i {INVENTORY.relative_to(REPO)} deploy.yml")
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY / "hosts.ini"), "deploy.yml"],
            cwd=REPO,
            env=ansible_env(),
        )
        if proc.returncode != 0:
            return proc.returncode
        if not standin.sweeps:
            print("error: deploy.yml created no sweep", file=sys.stderr)
            return 1
        (created,) = standin.sweeps.values()
        say(f"following sweep {created.path} to its end")
        try:
            standin.wait_for(
                lambda s: (
                    created.state in ("FINISHED", "CANCELED") and all(a.exited for a in s.agents.values())
                ),
                timeout=600,
                what="the sweep to finish",
            )
        except TimeoutError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        records = sorted(standin.records(created.id), key=lambda r: r["start"])
        t0 = records[0]["start"]
        say(f"sweep {created.path}: {created.state}; who ran what")
        print(f"    {'shard':<22} {'host':<12} {'agent':<14} {'run':<10} {'start':>6} {'secs':>5}  state")
        for r in records:
            secs = f"{r['end'] - r['start']:.1f}" if r["end"] else "-"
            print(
                f"    {r['params']['data_path']:<22} {r['agent_host']:<12} {r['agent_id']:<14} "
                f"{r['run_id']:<10} {r['start'] - t0:>6.1f} {secs:>5}  {r['state']}"
            )
        per_host = collections.Counter(r["agent_host"] for r in records)
        print("    runs per host: " + ", ".join(f"{h}={n}" for h, n in sorted(per_host.items())))
    say(
        f"done in {time.monotonic() - started:.0f}s; the hosts stay up "
        "(ssh details in inventory/demo/hosts.ini): `make demo-down` removes them"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
