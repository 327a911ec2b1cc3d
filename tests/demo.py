"""`make demo`: a local fleet, the W&B API stand-in, and the 12-shard sweep.

Brings up 3 test hosts (kept until `make demo-down`), serves the stand-in where the
hosts reach it, creates the users' 12-shard grid sweep with the real `wandb sweep`,
runs the agents on every host, and prints which host and agent ran which shard.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from fleet import Fleet, FleetError
from standin import StandIn
from support import REPO, TEST_API_KEY, VENV_BIN, run_playbook

SHARDS = REPO / "examples" / "shards"
STATE = REPO / ".cache" / "fleet" / "demo"
HOSTS = int(os.environ.get("DEMO_HOSTS", "3"))


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def main() -> int:
    started = time.monotonic()
    fleet = Fleet("demo", STATE)
    say(f"bringing up {HOSTS} test hosts (fleet 'demo')")
    try:
        hosts = fleet.up(HOSTS)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    inventory = fleet.write_inventory(REPO / "inventory" / "demo" / "hosts.ini", hosts)
    for host in hosts:
        print(f"    {host.name:<12} {host.ip}")
    print(f"    inventory: {inventory.relative_to(REPO)}")

    with (
        StandIn(host=fleet.gateway(), api_key=TEST_API_KEY) as standin,
        tempfile.TemporaryDirectory(prefix="sweep-fleet-demo-") as tmp,
    ):
        say(f"W&B API stand-in at {standin.url}")
        env = dict(
            os.environ, WANDB_BASE_URL=standin.url, WANDB_API_KEY=TEST_API_KEY, WANDB_ERROR_REPORTING="false"
        )
        proc = subprocess.run(
            [str(VENV_BIN / "wandb"), "sweep", "--project", "beauty-score", str(SHARDS / "sweep.yaml")],
            cwd=tmp,
            env=env,
            text=True,
            capture_output=True,
            check=True,
        )
        sweep_id = proc.stderr.split("wandb agent ")[1].split()[0]
        say(f"created sweep {sweep_id} (12 data shards)")

        secrets = Path(tmp) / "vars.yml"
        secrets.write_text(
            yaml.safe_dump(
                {
                    "proof_sweep_id": sweep_id,
                    "proof_base_url": standin.url,
                    "proof_api_key": TEST_API_KEY,
                    "proof_uv_binary": str(VENV_BIN / "uv"),
                    "proof_code_dir": str(SHARDS),
                }
            )
        )
        secrets.chmod(0o600)
        say("installing wandb on every host and running one agent per host until the sweep ends")
        run_playbook(REPO / "tests/playbooks/proof.yml", inventory, "-e", f"@{secrets}")

        records = sorted(standin.records(sweep_id), key=lambda r: r["start"])
        t0 = records[0]["start"] if records else 0
        say(f"sweep {sweep_id}: {standin.sweep(sweep_id).state}, who ran what")
        print(f"    {'shard':<22} {'host':<12} {'agent':<14} {'run':<10} {'start':>6} {'secs':>5}  state")
        for r in records:
            secs = f"{r['end'] - r['start']:.1f}" if r["end"] else "-"
            print(
                f"    {r['params']['data_path']:<22} {r['agent_host']:<12} {r['agent_id']:<14} "
                f"{r['run_id']:<10} {r['start'] - t0:>6.1f} {secs:>5}  {r['state']}"
            )
        per_host = collections.Counter(r["agent_host"] for r in records)
        print("    runs per host: " + ", ".join(f"{h}={n}" for h, n in sorted(per_host.items())))
    say(f"done in {time.monotonic() - started:.0f}s; the hosts stay up: `make demo-down` removes them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
