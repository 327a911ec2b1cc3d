"""deploy.yml over SSH against fresh test hosts and the W&B API stand-in.

The tests in this module share one fleet and run in order, as a user's fleet would
live: check mode on fresh hosts, the first deploy, a re-run, a second sweep, new hosts
joining it, GPU agents. The code modes and the RL scenario get a fleet of their own.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from fleet import gpus
from support import (
    REPO,
    TEST_API_KEY,
    VENV_BIN,
    changed_tasks,
    recap,
    round_trips,
    run_playbook,
    task_output,
    wait_until,
)

pytestmark = pytest.mark.fleet

SHARDS = REPO / "examples" / "shards"
RL = REPO / "examples" / "rl-mpe"
SHARD_VALUES = yaml.safe_load((SHARDS / "sweep.yaml").read_text())["parameters"]["data_path"]["values"]
VAULT_PASSWORD = "not-a-real-vault-password"


class Site:
    """A fleet with an inventory directory, as a user keeps one."""

    def __init__(self, fleet, standin, root: Path):
        self.fleet, self.standin, self.root = fleet, standin, root
        self.inventory = root / "inventory"
        (self.inventory / "group_vars").mkdir(parents=True)
        self.vault_password = root / "vault-pass"
        self.vault_password.write_text(VAULT_PASSWORD)
        self.write_inventory()

    def write_inventory(self) -> None:
        self.fleet.write_inventory(self.inventory / "hosts.ini")

    def set_vars(self, **values) -> None:
        """group_vars/fleet.yml: the settings, with the API key from Ansible Vault."""
        encrypted = subprocess.run(
            [
                str(VENV_BIN / "ansible-vault"),
                "encrypt_string",
                "--vault-password-file",
                str(self.vault_password),
                "--name",
                "wandb_credentials_api_key",
                TEST_API_KEY,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        plain = yaml.safe_dump(
            {
                "wandb_credentials_base_url": self.standin.url,
                "wandb_runtime_uv_source": "controller",
                "wandb_agent_stagger_seconds": 0.5,
                **values,
            },
            sort_keys=False,
        )
        (self.inventory / "group_vars" / "fleet.yml").write_text("---\n" + encrypted + plain)

    def deploy(self, *args: str, check: bool = True, playbook: str = "deploy.yml"):
        return run_playbook(
            REPO / playbook,
            self.inventory / "hosts.ini",
            "--vault-password-file",
            str(self.vault_password),
            *args,
            check=check,
        )

    def sh(self, host, command: str) -> str:
        return self.fleet.ssh(host, command).stdout

    def units(self, host) -> dict[str, dict[str, str]]:
        """Properties of the wandb-agent units on a host."""
        out = self.sh(
            host,
            "systemctl show 'wandb-agent@*' --all -p Id,ActiveState,SubState,Result,"
            "InvocationID,ExecMainStatus,NRestarts",
        )
        units, current = {}, {}
        for line in [*out.splitlines(), ""]:
            if not line.strip():
                if current.get("Id"):
                    units[current["Id"]] = current
                current = {}
                continue
            key, _, value = line.partition("=")
            current[key] = value
        return units


def journal_on_failure(site, hosts):
    return "\n".join(
        site.fleet.ssh(h, "sudo journalctl -u 'wandb-agent@*' --no-pager | tail -40", check=False).stdout
        for h in hosts
    )


@pytest.fixture(scope="module")
def site(make_fleet, tmp_path_factory):
    from standin import StandIn

    fleet = make_fleet(3)
    standin = StandIn(host=fleet.gateway(), api_key=TEST_API_KEY).start()
    yield Site(fleet, standin, tmp_path_factory.mktemp("site"))
    standin.stop()


SHARD_VARS = {
    "wandb_code_local_path": str(SHARDS),
    "wandb_code_extra_paths": [{"src": str(SHARDS / "datasets") + "/", "dest": "data/shards"}],
    "wandb_sweep_project": "beauty-score",
    "wandb_sweep_name": "beauty-score-shards",
    "wandb_sweep_program": "main.py",
    "wandb_sweep_metric": {"name": "mean_score", "goal": "maximize"},
    "wandb_sweep_parameters": {"data_path": {"values": SHARD_VALUES}},
    "wandb_agent_environment": {"SHARD_SECONDS": "1"},
}


def test_check_mode_on_fresh_hosts_changes_nothing(site):
    site.set_vars(**SHARD_VARS)
    result = site.deploy("--check")
    assert set(recap(result.stdout)) == {h.name for h in site.fleet.hosts()}
    assert all(c["failed"] == 0 for c in recap(result.stdout).values())
    assert "Would create a sweep (check mode)" in result.stdout
    for host in site.fleet.hosts():
        out = site.sh(
            host,
            "id wandb 2>&1; ls /opt/sweep-fleet /etc/sweep-fleet 2>&1; "
            "ls /etc/systemd/system/ | grep -c wandb || true",
        )
        assert "no such user" in out
        assert out.count("No such file or directory") == 2
        assert out.strip().endswith("0")
    assert site.standin.sweeps == {}


def shards_finished(site) -> None:
    """Wait until the 12-shard sweep has finished and every agent has exited."""
    (sweep,) = site.standin.sweeps.values()
    site.standin.wait_for(
        lambda s: sweep.state == "FINISHED" and all(a.exited for a in s.agents.values()),
        timeout=240,
        what="the 12-shard sweep to finish",
    )


def test_deploy_runs_the_twelve_shards(site):
    started = time.monotonic()
    result = site.deploy("-vvv")
    print(f"cold deploy on 3 hosts: {time.monotonic() - started:.1f}s")
    assert TEST_API_KEY not in result.stdout + result.stderr, "the API key leaked into -vvv output"
    (sweep,) = site.standin.sweeps.values()
    assert f"Created sweep {sweep.path}" in result.stdout
    assert f"/{sweep.path.split('/')[0]}/beauty-score/sweeps/{sweep.id}" in result.stdout

    hosts = site.fleet.hosts()
    # uv from the controller went to each fresh host (no record of a deploy) with the runtime's
    # one call to it, not after a first call that asked whether the host had it.
    runtime = task_output(result.stdout, "wandb_runtime : Make the venv with the pinned wandb")
    assert round_trips(runtime, modules=True) == {h.ip: 1 for h in hosts}, runtime[-3000:]
    # That call also installed the local code's requirements (read on the controller): the
    # code role asks the host nothing about them.
    assert '"code_requirements": {' in runtime and '"iniconfig==' in runtime, runtime[-3000:]
    for host in hosts:
        assert VENV_ASKED[1] not in changed_tasks(result.stdout, host.name, ran=True)
        # The agents' call wrote the record (the next test's warm run finds it whole).
        assert RECORDED not in changed_tasks(result.stdout, host.name, ran=True)
        assert site.sh(host, "sudo test -f /var/lib/sweep-fleet/deploy-record.json && echo yes") == "yes\n"
        # The preflight checked every role's inputs for all hosts at once: the roles' own
        # checks are not handed to the hosts (each costs Ansible time per host, skipped).
        handed = set(ROLE_CHECKS) & set(changed_tasks(result.stdout, host.name, seen=True))
        assert not handed, handed
    try:
        shards_finished(site)
    except TimeoutError:
        pytest.fail(journal_on_failure(site, hosts))
    records = site.standin.records(sweep.id)
    ran = collections.Counter(r["params"]["data_path"] for r in records)
    assert ran == collections.Counter(SHARD_VALUES), "each shard exactly once"
    # The code was pushed (without what is excluded) and its requirements.txt installed.
    code = site.sh(hosts[0], "sudo ls -A /opt/sweep-fleet/code").split()
    assert {"main.py", "datasets", "requirements.txt", "data"} <= set(code)
    extra = site.sh(hosts[0], "sudo ls /opt/sweep-fleet/code/data/shards").split()
    assert sorted(extra) == sorted(f"part{i}.csv" for i in range(1, 13)), "extra paths are pushed too"
    assert (
        site.sh(hosts[0], "/opt/sweep-fleet/venv/bin/python -c 'import iniconfig; print(1)'").strip() == "1"
    )
    # Success: every run finished with exit code 0, and every host did its share.
    assert {(r["state"], r["exitcode"]) for r in records} == {("finished", 0)}
    assert {r["agent_host"] for r in records} == {h.name for h in hosts}
    # The agents stopped cleanly: inactive, exit 0, no restarts.
    for host in hosts:
        units = wait_until(
            lambda h=host: (
                all(u["ActiveState"] == "inactive" for u in site.units(h).values()) and site.units(h)
            ),
            timeout=60,
            what=f"agents on {host.name} to stop",
        )
        for unit in units.values():
            assert (unit["Result"], unit["ExecMainStatus"], unit["NRestarts"]) == ("success", "0", "0"), unit


def test_second_deploy_changes_nothing(site):
    sweeps_before = set(site.standin.sweeps)
    started = time.monotonic()
    result = site.deploy()
    print(f"no-change deploy on 3 hosts: {time.monotonic() - started:.1f}s")
    assert changed_tasks(result.stdout) == []
    assert {h: c["changed"] for h, c in recap(result.stdout).items()} == dict.fromkeys(
        [h.name for h in site.fleet.hosts()], 0
    )
    assert set(site.standin.sweeps) == sweeps_before, "no new sweep"
    assert "is FINISHED: agents were not started" in result.stdout


def test_a_deploy_that_changes_nothing_asks_each_host_one_question(site):
    """The second deploy recorded what it converged; the next one asks each host once (its
    facts and that record, checked against the host) and ends there. A file changed by hand
    on one host is drift: that host alone is deployed, the file set back, the record renewed.
    The record lists the agents' own paths too (written by their call): a directory of theirs
    changed by hand on a second host is drift as well."""
    hosts = site.fleet.hosts()
    result = site.deploy("-vvv")
    why = re.findall(r'^ok: \[(\S+)\] => \{\n\s+"msg": "(.*)"', result.stdout, re.MULTILINE)
    assert round_trips(result.stdout) == {h.ip: 1 for h in hosts}, (round_trips(result.stdout), why)
    assert changed_tasks(result.stdout) == []
    assert "TASK [wandb_runtime" not in result.stdout
    assert TEST_API_KEY not in result.stdout + result.stderr

    netrc = "/etc/sweep-fleet/netrc"
    before = site.sh(hosts[0], f"sudo sha256sum {netrc}")
    site.sh(hosts[0], f"echo 'machine elsewhere' | sudo tee -a {netrc} >/dev/null")
    dropin = "/etc/systemd/system/wandb-agent@1.service.d"
    site.sh(hosts[1], f"sudo chmod 0700 {dropin}")
    result = site.deploy()
    assert changed_tasks(result.stdout, hosts[0].name) == [
        "wandb_credentials : Write the key and the connection settings"
    ]
    assert f"path {netrc}" in result.stdout
    assert changed_tasks(result.stdout, hosts[1].name) == ["wandb_agent : Run the agents"]
    assert f"path {dropin}" in result.stdout
    assert all(changed_tasks(result.stdout, h.name) == [] for h in hosts[2:])
    assert site.sh(hosts[0], f"sudo sha256sum {netrc}") == before
    assert site.sh(hosts[1], f"sudo stat -c %a {dropin}").strip() == "755"
    again = site.deploy("-vvv")
    assert round_trips(again.stdout) == {h.ip: 1 for h in hosts}, round_trips(again.stdout)


def test_an_update_drains_and_converges_only_the_hosts_that_differ(site):
    """update.yml compares each host with its record as deploy.yml does, before any drain: a
    host that matches keeps its agents untouched (the one question, nothing more); the one
    with a file changed by hand alone is drained, converged and recorded again."""
    hosts = site.fleet.hosts()
    netrc = "/etc/sweep-fleet/netrc"
    before = site.sh(hosts[1], f"sudo sha256sum {netrc}")
    site.sh(hosts[1], f"echo 'machine elsewhere' | sudo tee -a {netrc} >/dev/null")
    result = site.deploy("-vvv", playbook="playbooks/update.yml")
    trips = round_trips(result.stdout)
    assert {h.ip: trips[h.ip] for h in hosts if h != hosts[1]} == {h.ip: 1 for h in hosts if h != hosts[1]}, (
        trips
    )
    assert all(changed_tasks(result.stdout, h.name) == [] for h in hosts if h != hosts[1])
    changed = changed_tasks(result.stdout, hosts[1].name)
    # The drain, with the switch to the update staged while the agents ran.
    assert "wandb_agent : Drain the agents and switch the host to the staged update" in changed, changed
    assert "wandb_credentials : Write the key and the connection settings" in changed, changed
    assert result.stdout.count("TASK [wandb_sweep : Find the sweep (or create it) and set its state]") == 1
    assert site.sh(hosts[1], f"sudo sha256sum {netrc}") == before
    assert TEST_API_KEY not in result.stdout + result.stderr
    again = site.deploy("-vvv")
    assert round_trips(again.stdout) == {h.ip: 1 for h in hosts}, round_trips(again.stdout)


def test_an_update_in_kill_mode_deploys_the_host_in_full_after_the_kill(site):
    """A kill is not staged (nothing is left running to wait for): the host is killed, then
    deployed in full and recorded, as before staging existed."""
    hosts = site.fleet.hosts()
    netrc = "/etc/sweep-fleet/netrc"
    before = site.sh(hosts[2], f"sudo sha256sum {netrc}")
    site.sh(hosts[2], f"echo 'machine elsewhere' | sudo tee -a {netrc} >/dev/null")
    result = site.deploy("-e", "wandb_agent_stop_mode=kill", playbook="playbooks/update.yml")
    # How agents are stopped is not part of a host's desired state: the others stay as they are.
    assert all(changed_tasks(result.stdout, h.name) == [] for h in hosts if h != hosts[2])
    changed = changed_tasks(result.stdout, hosts[2].name)
    assert "wandb_agent : Kill every process of the agents" in changed, changed
    assert "wandb_credentials : Write the key and the connection settings" in changed, changed
    assert "wandb_agent : Drain the agents and switch the host to the staged update" not in changed, changed
    assert site.sh(hosts[2], f"sudo sha256sum {netrc}") == before
    again = site.deploy("-vvv")
    assert round_trips(again.stdout) == {h.ip: 1 for h in hosts}, round_trips(again.stdout)


def test_a_rollout_that_finds_a_process_left_switches_nothing_and_the_next_update_does(site):
    """The switch stops the agents, then waits for every process of their users to end: one
    that is left (started outside the agents' units) fails the host before its code is
    switched - the staged code stays beside the code, no record claims the update - and the
    update stops there. Once the process is gone, the next update switches the host."""
    hosts = site.fleet.hosts()
    host, netrc = hosts[0], "/etc/sweep-fleet/netrc"
    code_dir = "sudo stat -c %i /opt/sweep-fleet/code"
    inode = site.sh(host, code_dir)
    site.sh(host, f"echo 'machine elsewhere' | sudo tee -a {netrc} >/dev/null")
    site.sh(host, "sudo systemd-run --unit=left-behind --uid=wandb-1 sleep 600")
    try:
        failed = site.deploy(playbook="playbooks/update.yml", check=False)
        assert failed.returncode != 0
        assert "these processes of the agents' users are left" in failed.stdout, failed.stdout[-3000:]
        assert site.sh(host, code_dir) == inode, "the code was switched"
        assert site.sh(host, "sudo test -d /opt/sweep-fleet/.code.staged && echo staged").strip() == "staged"
        record = "/var/lib/sweep-fleet/deploy-record.json"
        assert site.sh(host, f"sudo test -e {record} || echo none").strip() == "none"
    finally:
        site.sh(host, "sudo systemctl stop left-behind")
    result = site.deploy(playbook="playbooks/update.yml")
    changed = changed_tasks(result.stdout, host.name)
    assert "wandb_agent : Drain the agents and switch the host to the staged update" in changed, changed
    assert site.sh(host, code_dir) != inode
    assert site.sh(host, "sudo ls -a /opt/sweep-fleet").split().count(".code.staged") == 0
    again = site.deploy("-vvv")
    assert round_trips(again.stdout) == {h.ip: 1 for h in hosts}, round_trips(again.stdout)


SWITCH = "wandb_agent : Drain the agents and switch the host to the staged update"
VENV_ASKED = (
    "wandb_runtime : Make the venv with the pinned wandb",
    "wandb_code : Install the code's requirements into the venv",
)
DIFFERS = "Say what differs from the last deploy"
KEY_WRITTEN = (
    "Forget the record of the last deploy",
    "wandb_credentials : Write the key and the connection settings",
)
AGENTS_WRITTEN = ("wandb_agent : Run the agents",)
ROLE_CHECKS = tuple(
    f"{role} : Check the inputs"
    for role in ("wandb_runtime", "wandb_credentials", "wandb_code", "wandb_agent", "wandb_slurm")
)
RECORDED = "Record what this deploy converged"
# The staging's tasks beyond the code's transfer (tasks/stage_all.yml): a host whose update
# is of the code alone is not handed them at all (they cost Ansible time per host, skipped).
STAGED_BEYOND_THE_CODE = (
    "Forget the record of the last deploy",
    "wandb_credentials : Check the inputs",
    "wandb_code : Install the code's requirements into the venv",
    "wandb_agent : Check the inputs",
)


def test_a_change_of_the_code_alone_writes_only_the_code_and_one_of_its_requirements_asks_about_the_venv(
    site, tmp_path
):
    """The record keeps the digests of what shapes the venv (the runtime's options, the local
    code's requirement files) and of everything but the code: an update of the code alone, on
    hosts that have not drifted, is staged without the runtime's check nor the requirements'
    check (the rest of the staging is not even handed to the hosts) and writes nothing but
    the code (the record is kept and still lists the key's files: one changed by hand is
    drift), and a deploy of it runs neither the runtime, the requirements' install nor the
    key's (its record also kept); an update that changes the requirements file asks the
    runtime's call again, which compares the requirements too (and is still staged: the venv
    stays as it is)."""
    hosts = site.fleet.hosts()
    code = tmp_path / "shards"
    shutil.copytree(SHARDS, code)
    try:
        site.set_vars(**{**SHARD_VARS, "wandb_code_local_path": str(code)})
        site.deploy()
        # The sweep's end changes the settings (its state): the record is of the ended sweep.
        shards_finished(site)
        site.deploy()
        (code / "notes.txt").write_text("v2\n")
        result = site.deploy(playbook="playbooks/update.yml")
        for host in hosts:
            assert SWITCH in changed_tasks(result.stdout, host.name)
            ran = changed_tasks(result.stdout, host.name, ran=True)
            assert not set(VENV_ASKED + KEY_WRITTEN + AGENTS_WRITTEN) & set(ran), (
                ran,
                task_output(result.stdout, DIFFERS),
            )
            seen = changed_tasks(result.stdout, host.name, seen=True)
            assert not set(STAGED_BEYOND_THE_CODE) & set(seen), seen
            assert site.sh(host, "sudo cat /opt/sweep-fleet/code/notes.txt") == "v2\n"
        edited = hosts[0]
        site.sh(edited, "echo '# by hand' | sudo tee -a /etc/sweep-fleet/wandb.env >/dev/null")
        requirements = code / "requirements.txt"
        requirements.write_text(requirements.read_text() + "# the same packages\n")
        (code / "notes.txt").write_text("v3\n")
        result = site.deploy(playbook="playbooks/update.yml")
        assert "path /etc/sweep-fleet/wandb.env" in task_output(result.stdout, DIFFERS), result.stdout
        assert "# by hand" not in site.sh(edited, "sudo cat /etc/sweep-fleet/wandb.env")
        for host in hosts:
            assert SWITCH in changed_tasks(result.stdout, host.name)
            ran = changed_tasks(result.stdout, host.name, ran=True)
            # The runtime's call (with the local code's requirements) asks about the venv.
            assert VENV_ASKED[0] in ran and VENV_ASKED[1] not in ran, ran
            assert bool(set(KEY_WRITTEN + AGENTS_WRITTEN) & set(ran)) == (host == edited), ran
            assert site.sh(host, "sudo cat /opt/sweep-fleet/code/notes.txt") == "v3\n"
        (code / "notes.txt").write_text("v4\n")
        result = site.deploy("-vvv")
        # The question, the directories of the code and its extra path, and the agents (they
        # link the code's new top-level entries, and write the record); the code goes by rsync.
        assert round_trips(result.stdout) == {h.ip: 3 for h in hosts}, round_trips(result.stdout)
        for host in hosts:
            assert "wandb_code : Push the code from the controller" in changed_tasks(result.stdout, host.name)
            ran = changed_tasks(result.stdout, host.name, ran=True)
            assert not set(VENV_ASKED + KEY_WRITTEN) & set(ran), ran
            assert site.sh(host, "sudo cat /opt/sweep-fleet/code/notes.txt") == "v4\n"
        again = site.deploy("-vvv")
        assert round_trips(again.stdout) == {h.ip: 1 for h in hosts}, round_trips(again.stdout)
        site.sh(edited, "echo '# by hand' | sudo tee -a /etc/sweep-fleet/wandb.env >/dev/null")
        result = site.deploy()
        assert "path /etc/sweep-fleet/wandb.env" in task_output(result.stdout, DIFFERS), result.stdout
        assert "# by hand" not in site.sh(edited, "sudo cat /etc/sweep-fleet/wandb.env")
    finally:
        site.set_vars(**SHARD_VARS)


# Four more shards for the grown sweep: files the code already has (its extra path).
MORE_SHARDS = [f"data/shards/part{i}.csv" for i in range(1, 5)]


def scored(site, host) -> collections.Counter:
    """The shards the program says it scored on a host (its own output, in the agents' journal)."""
    out = site.sh(host, "sudo journalctl -u 'wandb-agent@*' -o cat --no-pager | grep -a '^scored ' || true")
    return collections.Counter(line.split()[1].rstrip(":") for line in out.splitlines())


def test_four_more_shards_run_only_the_new_values(site):
    """The users' 12-shard grid has finished; they add shards 13 to 16. The new sweep follows
    the old one, seeded with its 12 finished runs: exactly 4 new runs, every shard scored once
    in all, by the program's own count."""
    (old,) = site.standin.sweeps.values()
    assert old.state == "FINISHED"
    grown = {**SHARD_VARS, "wandb_sweep_parameters": {"data_path": {"values": SHARD_VALUES + MORE_SHARDS}}}
    site.set_vars(**grown)
    planned = site.deploy("--check", "--diff")
    shown = " ".join(planned.stdout.split())
    assert f"Would create a successor of {old.path} (check mode)" in shown
    assert "12 run(s) done or under way are not run again, 12 of 16 grid values done, 4 to run" in shown, (
        shown
    )
    assert "+ - data/shards/part1.csv" in shown and list(site.standin.sweeps) == [old.id]

    result = site.deploy()
    (new,) = [s for s in site.standin.sweeps.values() if s is not old]
    shown = " ".join(result.stdout.split())
    assert f"Created sweep {new.path}" in shown
    assert f"it follows {old.path} (FINISHED, 0 run(s) still running)" in shown
    assert new.description == f"sweep-fleet: successor of {old.path}"
    site.standin.wait_for(
        lambda s: new.state == "FINISHED" and all(a.exited for a in s.agents.values() if a.sweep == new.path),
        timeout=240,
        what="the 4 new shards to run",
    )
    runs = site.standin.records(new.id)
    assert sorted(r["params"]["data_path"] for r in runs) == sorted(MORE_SHARDS), "exactly the 4 new shards"
    assert {(r["state"], r["exitcode"]) for r in runs} == {("finished", 0)}
    assert len(site.standin.records(old.id)) == 12, "the old sweep ran nothing more"
    total = sum((scored(site, host) for host in site.fleet.hosts()), collections.Counter())
    assert total == collections.Counter(SHARD_VALUES + MORE_SHARDS), "every shard scored exactly once"

    # The same config again: the successor is found by its config, nothing changes.
    again = site.deploy()
    assert changed_tasks(again.stdout) == [] and len(site.standin.sweeps) == 2
    assert f"Joined sweep {new.path}" in " ".join(again.stdout.split())


def test_a_change_a_successor_cannot_keep_is_refused_before_any_host_is_touched(site):
    hosts = site.fleet.hosts()
    before = {h.name: site.sh(h, "sudo cat /etc/sweep-fleet/sweep.env") for h in hosts}
    grown = {**SHARD_VARS, "wandb_sweep_parameters": {"data_path": {"values": SHARD_VALUES + MORE_SHARDS}}}
    site.set_vars(**{**grown, "wandb_sweep_metric": {"name": "mean_score", "goal": "minimize"}})
    for args in (("--check",), ()):
        result = site.deploy(*args, check=False)
        assert result.returncode != 0
        text = " ".join(result.stdout.split())
        assert (
            'metric {"name": "mean_score", "goal": "maximize"} -> {"name": "mean_score", "goal": "minimize"}'
            in text
        )
        assert "set wandb_sweep_replace=true for a fresh sweep" in text and "undo that change" in text
        assert all(counts["changed"] == 0 for counts in recap(result.stdout).values()), result.stdout
    assert len(site.standin.sweeps) == 2, "no sweep made"
    assert {h.name: site.sh(h, "sudo cat /etc/sweep-fleet/sweep.env") for h in hosts} == before
    site.set_vars(**grown)


SLOW_VARS = {
    **SHARD_VARS,
    "wandb_sweep_name": "slow-grid",
    "wandb_sweep_program": "main.py",
    "wandb_sweep_parameters": {"data_path": {"values": SHARD_VALUES}, "seed": {"values": list(range(8))}},
    "wandb_agent_environment": {"SHARD_SECONDS": "6"},
    "wandb_agent_count": 2,
}


def test_two_agents_per_host_and_new_hosts_join_the_same_sweep(site):
    site.set_vars(**SLOW_VARS)
    site.deploy()
    (sweep,) = [s for s in site.standin.sweeps.values() if s.config.get("name") == "slow-grid"]
    first = site.fleet.hosts()
    for host in first:
        units = site.units(host)
        assert sorted(units) == ["wandb-agent@1.service", "wandb-agent@2.service"]
        assert all(u["ActiveState"] == "active" for u in units.values()), units
    site.standin.wait_for(
        lambda s: len({a.host for a in s.agents.values() if a.sweep == sweep.path}) == 3,
        timeout=60,
        what="agents of all 3 hosts to join",
    )
    before = {h.name: {k: u["InvocationID"] for k, u in site.units(h).items()} for h in first}

    # A 4th host in the inventory, deploy over the whole inventory.
    (fourth,) = site.fleet.add(1)
    site.write_inventory()
    result = site.deploy()
    assert recap(result.stdout)[fourth.name]["changed"] > 0
    for host in first:
        assert recap(result.stdout)[host.name]["changed"] == 0, changed_tasks(result.stdout, host.name)
    # A 5th host, deployed alone with --limit.
    (fifth,) = site.fleet.add(1)
    site.write_inventory()
    result = site.deploy("--limit", fifth.name)
    assert set(recap(result.stdout)) == {fifth.name}

    assert [s for s in site.standin.sweeps.values() if s.config.get("name") == "slow-grid"] == [sweep]
    site.standin.wait_for(
        lambda s: {fourth.name, fifth.name} <= {r["agent_host"] for r in s.records(sweep.id)},
        timeout=90,
        what="runs on the new hosts",
    )
    joined = {a.host for a in site.standin.agents.values() if a.sweep == sweep.path}
    assert {fourth.name, fifth.name} <= joined
    # Nothing on the first three hosts restarted.
    after = {h.name: {k: u["InvocationID"] for k, u in site.units(h).items()} for h in first}
    assert after == before


def test_runs_are_their_agents_own_users_inside_the_unit_and_the_key_stays_hidden(site):
    host = site.fleet.hosts()[0]
    (sweep,) = [s for s in site.standin.sweeps.values() if s.config.get("name") == "slow-grid"]
    wait_until(lambda: "main.py" in site.sh(host, "ps -eo args"), timeout=60, what="a run on the host")
    ps = site.sh(host, "ps -eo user:20,pid,cgroup:200,args --no-headers | grep '[m]ain.py --data_path'")
    for line in ps.splitlines():
        user, _pid, cgroup, *_ = line.split()
        assert user.startswith("wandb-") and f"wandb-agent@{user[6:]}.service" in cgroup, line
        assert "wandb-agent@" in cgroup and ".service" in cgroup, line
    assert "venv/bin/python main.py --data_path=" in ps, "the default command uses the venv's Python"

    # The key is nowhere but the root-only netrc (and the unit's private credential).
    # The key goes to grep on stdin: on a command line, sudo would log it to the journal.
    def holders(command: str) -> list[str]:
        return site.fleet.ssh(host, command, input=TEST_API_KEY + "\n").stdout.split()

    assert TEST_API_KEY not in site.sh(host, "ps -eo args --no-headers")
    assert TEST_API_KEY not in site.sh(host, "systemctl show 'wandb-agent@*' --all")
    assert TEST_API_KEY not in site.sh(host, "sudo cat /etc/systemd/system/wandb-agent@.service")
    main_pid = site.sh(host, "systemctl show -p MainPID --value wandb-agent@1").strip()
    assert TEST_API_KEY not in site.sh(host, f"sudo cat /proc/{main_pid}/environ")
    found = holders("sudo grep -rlF -f /dev/stdin /etc /opt /var /home /tmp /srv /root 2>/dev/null || true")
    assert found == ["/etc/sweep-fleet/netrc"]
    assert site.sh(host, "sudo stat -c '%U:%G %a' /etc/sweep-fleet/netrc /etc/sweep-fleet").split() == [
        "root:root",
        "600",
        "root:root",
        "700",
    ]
    readable = holders(
        "grep -rlF -f /dev/stdin / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null || true"
    )
    assert readable == [], f"key readable by an ordinary user in: {readable}"
    site.standin.set_state(sweep.id, "CANCELED")


def test_one_agent_per_gpu(site):
    """An explicit list (the GPU hosts' own tests are in test_gpus.py): each agent pinned to its
    GPUs by UUID, opening only their device nodes, within the sandbox's exposure limit."""
    host = site.fleet.hosts()[0]
    described = gpus.four()
    gpus.install(site.fleet, host)
    gpus.set_gpus(site.fleet, host, described)
    hv = site.inventory / "host_vars"
    hv.mkdir(exist_ok=True)
    (hv / f"{host.name}.yml").write_text(yaml.safe_dump({"wandb_agent_gpus": ["0", "1,2"]}))
    site.set_vars(
        **{**SHARD_VARS, "wandb_sweep_name": "gpu-grid", "wandb_agent_environment": {"SHARD_SECONDS": "20"}}
    )
    site.deploy("--limit", host.name)
    units = site.units(host)
    assert sorted(units) == ["wandb-agent@1.service", "wandb-agent@2.service"]
    for index, devices in (("1", [0]), ("2", [1, 2])):
        env = site.sh(
            host,
            f"sudo cat /proc/$(systemctl show -p MainPID --value wandb-agent@{index})/environ"
            " | tr '\\0' '\\n' | grep ^CUDA_",
        )
        assert sorted(env.split()) == [
            "CUDA_DEVICE_ORDER=PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES=" + ",".join(described[d]["uuid"] for d in devices),
        ]
    # Only its GPUs' nodes may be opened (systemd inside a container cannot enforce it: the
    # unit's settings are what is checked here).
    props = site.sh(host, "systemctl show wandb-agent@2 -p DevicePolicy -p PrivateDevices -p DeviceAllow")
    assert {"DevicePolicy=closed", "PrivateDevices=no", "DeviceAllow=/dev/nvidia1 rw"} <= set(
        props.splitlines()
    )
    assert "/dev/nvidia0" not in props and "/dev/nvidia3" not in props and "uvm-tools" not in props
    exposure = site.fleet.ssh(
        host, "systemd-analyze security --no-pager --threshold=20 wandb-agent@1", check=False
    )
    assert exposure.returncode == 0, exposure.stdout[-2000:]
    # Three GPUs -> one agent: the extra units are stopped and disabled.
    (hv / f"{host.name}.yml").write_text(yaml.safe_dump({"wandb_agent_gpus": ["3"]}))
    site.deploy("--limit", host.name)
    units = site.units(host)
    assert units["wandb-agent@1.service"]["ActiveState"] == "active"
    assert units.get("wandb-agent@2.service", {}).get("ActiveState", "inactive") == "inactive"
    assert "wandb-agent@2" not in site.sh(host, "ls /etc/systemd/system/multi-user.target.wants/")
    (sweep,) = [s for s in site.standin.sweeps.values() if s.config.get("name") == "gpu-grid"]
    site.standin.set_state(sweep.id, "CANCELED")


# The code's transfer beside its push (roles/wandb_code/tasks/transfer_all_linux.yml).
TRANSFER_BESIDE_THE_PUSH = (
    "wandb_code : Look for the tools the code transfer needs",
    "wandb_code : Install the tools the code transfer needs",
    "wandb_code : Copy the checkout to stage the update in",
    "wandb_code : Create the code directory",
    "wandb_code : Check out the code",
    "wandb_code : Push the extra paths",
)


def test_local_code_without_extra_paths_is_the_push_alone(site):
    """Local code without extra paths, in the runtime's directory, on a host where the
    preflight found rsync: the code's transfer hands the host the push alone, none of the
    other transfer tasks to skip; the push puts the code in place and removes what the extra
    path had put there."""
    host = site.fleet.hosts()[1]
    shards = {key: value for key, value in SHARD_VARS.items() if key != "wandb_code_extra_paths"}
    site.set_vars(**{**shards, "wandb_sweep_name": "push-alone"})
    result = site.deploy("--limit", host.name)
    seen = changed_tasks(result.stdout, host.name, seen=True)
    assert "wandb_code : Push the code from the controller" in changed_tasks(result.stdout, host.name), seen
    assert not set(TRANSFER_BESIDE_THE_PUSH) & set(seen), seen
    code = site.sh(host, "sudo ls -A /opt/sweep-fleet/code").split()
    assert {"main.py", "datasets", "requirements.txt"} <= set(code) and "data" not in code, code
    (sweep,) = [s for s in site.standin.sweeps.values() if s.config.get("name") == "push-alone"]
    site.standin.set_state(sweep.id, "CANCELED")
