"""`make demo`: deploy.yml on a local fleet against the W&B API stand-in.

Brings up 3 test hosts, serves the stand-in where the hosts reach it (as a process of its
own, so that it keeps serving after this script), writes an inventory as a user would,
runs the real deploy.yml with the users' 12-shard sweep, follows the sweep to its end,
prints which host and agent ran which shard, and the commands to try next. Hosts and
stand-in stay until `make demo-down` (python tests/demo.py --down).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import yaml

from fleet import Fleet, FleetError
from support import REPO, TEST_API_KEY, VENV_BIN, ansible_env, wait_until

SHARDS = REPO / "examples" / "shards"
INVENTORY = REPO / "inventory" / "demo"
STATE = REPO / ".cache" / "demo"
HOSTS = int(os.environ.get("DEMO_HOSTS", "3"))


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def stop_standin() -> None:
    pid_file = STATE / "standin.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


def start_standin(host: str) -> str:
    """The stand-in in a process of its own; its base URL."""
    stop_standin()
    STATE.mkdir(parents=True, exist_ok=True)
    url_file = STATE / "standin.url"
    url_file.unlink(missing_ok=True)
    key_file = STATE / "standin.key"  # a test key, but still kept off command lines
    key_file.write_text(TEST_API_KEY + "\n")
    key_file.chmod(0o600)
    command = [sys.executable, "-m", "standin", "--host", host, "--api-key-file", str(key_file)]
    with open(STATE / "standin.log", "w") as log:
        proc = subprocess.Popen(
            [*command, "--url-file", str(url_file)],
            cwd=REPO / "tests",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this script, until make demo-down
        )
    (STATE / "standin.pid").write_text(str(proc.pid))
    wait_until(url_file.exists, timeout=30, what="the stand-in to listen")
    return url_file.read_text().strip()


def get(url: str, path: str):
    with urllib.request.urlopen(url + path, timeout=10) as resp:
        return json.load(resp)


def down() -> int:
    stop_standin()
    Fleet("demo", REPO / ".cache" / "fleet" / "demo").down()
    for path in sorted(INVENTORY.rglob("*"), reverse=True) if INVENTORY.exists() else []:
        path.unlink() if path.is_file() else path.rmdir()
    if INVENTORY.exists():
        INVENTORY.rmdir()
    say("demo hosts, stand-in and inventory/demo removed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", action="store_true", help="remove the demo's hosts, stand-in and inventory")
    if parser.parse_args().down:
        return down()
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

    url = start_standin(fleet.gateway())
    say(f"W&B API stand-in at {url} (log: .cache/demo/standin.log)")
    fleet.write_inventory(INVENTORY / "hosts.ini", hosts)
    sweep = yaml.safe_load((SHARDS / "sweep.yaml").read_text())
    (INVENTORY / "group_vars").mkdir(parents=True, exist_ok=True)
    settings = INVENTORY / "group_vars" / "fleet.yml"
    settings.write_text(
        "---\n# Written by `make demo`: the stand-in's test key, not a real one.\n"
        + yaml.safe_dump(
            {
                "wandb_credentials_api_key": TEST_API_KEY,
                "wandb_credentials_base_url": url,
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
    inventory = INVENTORY.relative_to(REPO) / "hosts.ini"
    say(f"ansible-playbook -i {inventory} deploy.yml")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY / "hosts.ini"), "deploy.yml"],
        cwd=REPO,
        env=ansible_env(),
    )
    if proc.returncode != 0:
        return proc.returncode
    sweeps = get(url, "/_standin/sweeps")
    if not sweeps:
        print("error: deploy.yml created no sweep", file=sys.stderr)
        return 1
    path = sweeps[-1]["path"]
    say(f"following sweep {path} to its end")
    try:
        wait_until(
            lambda: get(url, "/_standin/sweeps")[-1]["state"] in ("FINISHED", "CANCELED"),
            timeout=600,
            what="the sweep to finish",
        )
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    records = sorted(
        (r for r in get(url, "/_standin/records") if r["sweep"] == path), key=lambda r: r["start"]
    )
    t0 = records[0]["start"]
    say(f"sweep {path}: {get(url, '/_standin/sweeps')[-1]['state']}; who ran what")
    print(f"    {'shard':<22} {'host':<12} {'agent':<14} {'run':<10} {'start':>6} {'secs':>5}  state")
    for r in records:
        secs = f"{r['end'] - r['start']:.1f}" if r["end"] else "-"
        print(
            f"    {r['params']['data_path']:<22} {r['agent_host']:<12} {r['agent_id']:<14} "
            f"{r['run_id']:<10} {r['start'] - t0:>6.1f} {secs:>5}  {r['state']}"
        )
    per_host = collections.Counter(r["agent_host"] for r in records)
    print("    runs per host: " + ", ".join(f"{h}={n}" for h, n in sorted(per_host.items())))
    play = f".venv/bin/ansible-playbook -i {inventory}"
    settings = INVENTORY.relative_to(REPO) / "group_vars" / "fleet.yml"
    edit = "s/^wandb_sweep_name: .*/wandb_sweep_name: demo-2/; s/SHARD_SECONDS: .1./SHARD_SECONDS: '30'/"
    say(f"done in {time.monotonic() - started:.0f}s. The hosts and the stand-in stay up; try:")
    print(
        f"""
    {play} playbooks/status.yml                   # every agent, the sweep's progress
    sed -i "{edit}" {settings}   # a second sweep, slower runs
    {play} deploy.yml                             # the agents move to it
    {play} playbooks/status.yml                   # its runs, host by host
    {play} playbooks/stop.yml                     # drain, one host at a time
    {play} playbooks/start.yml
    {play} playbooks/sweep.yml -e wandb_sweep_action=pause
    {play} playbooks/sweep.yml -e wandb_sweep_action=resume
    {play} playbooks/remove.yml                   # everything off the hosts
    make demo-down                                            # hosts, stand-in and inventory gone
"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
