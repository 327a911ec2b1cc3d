"""Trust: no secret shows anywhere, bad input changes nothing, runs cannot reach root.

One fleet of two hosts lives through this module in order. Its API key comes from Ansible
Vault with the line break `echo KEY | ansible-vault encrypt_string` leaves, and its
downloads go through an authenticating proxy whose password is in the inventory: both
secrets are really used, and the tests look for them in the output of every playbook
(-vvv --diff), the journal, process arguments and environments, `systemctl show` of every
unit and every file a non-root user can read. Then a table of wrong inputs runs against
the deployed fleet, each refused with one short message before anything changes.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import textwrap
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from fleet.fleet import LABEL, LOGIN_USER, Host, podman
from standin import StandIn
from support import REPO, TEST_API_KEY, VENV_BIN, AuthProxy, recap, run_playbook, wait_until

pytestmark = pytest.mark.fleet

SHARDS = REPO / "examples" / "shards"
PROXY_USER = "fleet"
PROXY_PASSWORD = "pr0xy-" + secrets.token_hex(8)
VAULT_PASSWORD = "not-a-real-vault-password"
# The agents' processes may hold the proxy in their environment (they need it); nothing else may.
AGENT_CGROUP = "wandb-agent@"


class Trust:
    def __init__(self, fleet, standin: StandIn, proxy: AuthProxy, root: Path):
        self.fleet, self.standin, self.proxy, self.root = fleet, standin, proxy, root
        self.hosts = fleet.hosts()
        self.inventory = root / "inventory"
        (self.inventory / "group_vars").mkdir(parents=True)
        self.hosts_file = fleet.write_inventory(self.inventory / "hosts.ini")
        self.vault_password = root / "vault-pass"
        self.vault_password.write_text(VAULT_PASSWORD)
        self.proxy_url = proxy.url(PROXY_USER, PROXY_PASSWORD)
        # Each secret as it is, and in the forms it takes on its way: Basic auth headers,
        # URL escaping (a proxy URL), JSON escaping (Ansible's and the modules' output).
        self.secrets = {}
        for name, secret in (("key", TEST_API_KEY), ("proxy password", PROXY_PASSWORD)):
            for form, text in (
                ("", secret),
                (" (URL-escaped)", urllib.parse.quote(secret, safe="")),
                (" (JSON-escaped)", json.dumps(secret)[1:-1]),
            ):
                self.secrets.setdefault(text, name + form)
        self.secrets[base64.b64encode(f"api:{TEST_API_KEY}".encode()).decode()] = "key (Basic auth)"
        self.secrets[base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()] = "proxy auth"

    def write_vars(self, vault_key: str | None = TEST_API_KEY, **values) -> None:
        """group_vars/fleet.yml; the key as a user puts it in: echo KEY | ansible-vault encrypt_string."""
        encrypted = (
            ""
            if vault_key is None
            else subprocess.run(
                [
                    str(VENV_BIN / "ansible-vault"),
                    "encrypt_string",
                    "--vault-password-file",
                    str(self.vault_password),
                    "--stdin-name",
                    "wandb_credentials_api_key",
                ],
                input=vault_key + "\n",
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        plain = {
            "wandb_credentials_base_url": self.standin.url,
            "wandb_credentials_https_proxy": self.proxy_url,
            "wandb_credentials_no_proxy": "localhost,127.0.0.1",
            "wandb_runtime_uv_source": "controller",
            # The hosts download themselves (no wheelhouse), through the proxy and its password.
            "wandb_runtime_wheelhouse": False,
            "wandb_runtime_environment": {"HTTPS_PROXY": self.proxy_url},
            "wandb_code_local_path": str(SHARDS),
            "wandb_sweep_project": "trust",
            "wandb_sweep_name": "trust-grid",
            "wandb_sweep_program": "main.py",
            "wandb_sweep_parameters": {
                "data_path": {"values": [f"datasets/part{i}.csv" for i in range(1, 7)]}
            },
            "wandb_agent_environment": {"SHARD_SECONDS": "8"},
            "wandb_agent_stagger_seconds": 0.5,
            "wandb_agent_term_timeout": 10,
            **values,
        }
        (self.inventory / "group_vars" / "fleet.yml").write_text(
            "---\n" + encrypted + yaml.safe_dump(plain, sort_keys=False)
        )

    def play(self, playbook: str, *args: str, check: bool = True, inventory: Path | None = None):
        return run_playbook(
            REPO / playbook,
            inventory or self.hosts_file,
            "--vault-password-file",
            str(self.vault_password),
            *args,
            check=check,
        )

    def leaks(self, text: str) -> list[str]:
        return sorted({name for secret, name in self.secrets.items() if secret in text})

    def root_python(self, host: Host, script: str) -> str:
        """Run a Python script as root on a host; the secrets reach it on stdin, never argv."""
        command = f"sudo python3 -c {shlex_quote(script)}"
        return self.fleet.ssh(host, command, input=f"{TEST_API_KEY}\n{PROXY_PASSWORD}\n").stdout

    def readable_by(self, host: Host, user: str) -> list[str]:
        """Every file ``user`` can read that holds a secret. The patterns come on stdin (grep
        -f -, which any user can read, unlike /dev/stdin of a pipe another user owns), with a
        canary planted in a file the user can read: a grep that read no pattern or no file
        would miss the canary, and the search fails instead of finding nothing."""
        canary = "canary-" + secrets.token_hex(12)
        place = f"/var/tmp/sweep-fleet-canary-{user}"
        self.fleet.ssh(
            host, f"sudo install -m 0644 /dev/null {place} && echo {canary} | sudo tee {place} >/dev/null"
        )
        try:
            proc = self.fleet.ssh(
                host,
                f"sudo -u {user} grep -rlF -f - / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev "
                "2>/dev/null; echo rc=$?",
                input="\n".join([*self.secrets, canary]) + "\n",
                timeout=600,
            ).stdout.split()
        finally:
            self.fleet.ssh(host, f"sudo rm -f {place}")
        *found, rc = proc
        assert rc in ("rc=0", "rc=1", "rc=2"), rc  # 2: some files were unreadable, as expected
        assert place in found, f"{user}'s search did not find the canary: it searched nothing"
        return [path for path in found if path != place]

    def snapshot(self, host: Host) -> str:
        """What a bad input must not change: users, units, and sweep-fleet's directories."""
        return self.fleet.ssh(
            host,
            "getent passwd | sort; getent group | sort; "
            "systemctl list-unit-files --no-legend 'wandb-agent*'; "
            "systemctl list-units --all --plain --no-legend 'wandb-agent*'; "
            "sudo find /etc/sweep-fleet /opt/sweep-fleet /var/lib/sweep-fleet /etc/systemd/system "
            "-printf '%p %U %G %m %s %T@\\n' 2>/dev/null | sort",
        ).stdout


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@pytest.fixture(scope="module")
def site(make_fleet, tmp_path_factory):
    fleet = make_fleet(2)
    standin = StandIn(host=fleet.gateway(), api_key=TEST_API_KEY).start()
    proxy = AuthProxy(fleet.gateway(), PROXY_USER, PROXY_PASSWORD)
    yield Trust(fleet, standin, proxy, tmp_path_factory.mktemp("trust"))
    proxy.stop()
    standin.stop()


def the_sweep(site: Trust, name: str):
    (sweep,) = [s for s in site.standin.sweeps.values() if s.config.get("name") == name]
    return sweep


def test_deploy_with_a_vault_key_and_a_proxy_password_shows_neither(site):
    site.write_vars()
    result = site.play("deploy.yml", "-vvv", "--diff")
    assert site.leaks(result.stdout + result.stderr) == []
    assert site.proxy.tunnels > 0, "the hosts' downloads went through the proxy, with its password"
    assert site.proxy.refused == 0
    for host in site.hosts:
        netrc = site.fleet.ssh(host, "sudo cat /etc/sweep-fleet/netrc").stdout.splitlines()
        assert netrc[-1] == f"  password {TEST_API_KEY}", "the vault string's line break is gone"
    sweep = the_sweep(site, "trust-grid")
    site.standin.wait_for(
        lambda s: (
            {r["agent_host"] for r in s.records(sweep.id) if r["online"] and r["end"] is None}
            == {h.name for h in site.hosts}
        ),
        timeout=120,
        what="a run online on every host (the key works)",
    )


LEAK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    key, password = sys.stdin.read().split()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
            cgroup = open(f"/proc/{pid}/cgroup").read()
            args = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if key in env or key in args or password in args:
            found.append(f"{pid} key/argv: {args[:80]}")
        if password in env and "AGENT_CGROUP" not in cgroup:
            found.append(f"{pid} proxy password in its environment: {args[:80]}")
    print("\\n".join(found))
    """
).replace("AGENT_CGROUP", AGENT_CGROUP)


def test_no_secret_in_processes_journal_units_or_readable_files(site):
    for host in site.hosts:
        assert site.root_python(host, LEAK_SCRIPT).strip() == "", host.name
        journal = site.fleet.ssh(host, "sudo journalctl --no-pager -o export").stdout
        assert "wandb-agent@1" in journal
        assert site.leaks(journal) == [], f"{host.name}: the journal"
        units = site.fleet.ssh(
            host,
            "systemctl list-units --all --plain --no-legend --full | awk '{print $1}' "
            "| xargs -r systemctl show; systemctl show 'wandb-agent@*'",
        ).stdout
        assert "wandb-agent@1.service" in units
        assert site.leaks(units) == [], f"{host.name}: systemctl show"
        # Every file an ordinary user, nobody, or an agent's user can read; the agent's user
        # may read the key only in its unit's credential.
        for user, allowed in (
            (LOGIN_USER, []),
            ("nobody", []),
            ("wandb-1", ["/run/credentials/wandb-agent@1"]),
        ):
            found = site.readable_by(host, user)
            unexpected = [f for f in found if not any(f.startswith(a) for a in allowed)]
            assert unexpected == [], f"{host.name}: readable by {user}: {unexpected}"


def test_every_playbook_shows_no_secret(site):
    sweep = the_sweep(site, "trust-grid")
    # Pausing needs a sweep still going, and the grid's may have finished by now: one of its
    # own, which no agent runs.
    going = site.standin.create_sweep(
        {"program": "main.py", "method": "grid", "parameters": {"x": {"values": [1, 2]}}}, project="trust"
    )
    runs = [
        ("playbooks/status.yml",),
        ("playbooks/sweep.yml", "-e", "wandb_sweep_action=pause", "-e", f"wandb_sweep_id={going.path}"),
        ("playbooks/sweep.yml", "-e", "wandb_sweep_action=resume", "-e", f"wandb_sweep_id={going.path}"),
        ("playbooks/stop.yml", "-e", "wandb_agent_stop_mode=preempt"),
        ("playbooks/start.yml",),
        ("playbooks/update.yml", "-e", "wandb_agent_stop_mode=preempt", "-e", "sweep_fleet_serial=2"),
    ]
    for playbook, *args in runs:
        result = site.play(playbook, *args, "-vvv", "--diff")
        assert site.leaks(result.stdout + result.stderr) == [], playbook
        if "wandb_sweep_action=pause" in args:
            assert site.standin.sweep(going.id).state == "PAUSED"
    # Leave the fleet idle and steady for the bad-input table (the sweep may have finished).
    if sweep.state not in ("FINISHED", "CANCELED"):
        site.standin.set_state(sweep.id, "CANCELED")
    for host in site.hosts:
        wait_until(
            lambda host=host: (
                "running"
                not in site.fleet.ssh(host, "systemctl show -p SubState --value 'wandb-agent@*'").stdout
            ),
            timeout=60,
            what=f"{host.name}'s agents to end",
        )


BAD_TEMPLATE = "program: main.py\nmethod: grid\nparameters: {x: [unclosed\n"

# (playbook, extra variables, a part of the one message it must give)
BAD_INPUTS = [
    ("deploy.yml", {"wandb_credentials_api_key": ""}, "wandb_credentials_api_key is empty"),
    ("deploy.yml", {"wandb_credentials_api_key": "short"}, "wandb_credentials_api_key is not a W&B API key"),
    ("deploy.yml", {"wandb_credentials_api_key": "a b" * 25}, "has a space or line break inside"),
    ("deploy.yml", {"wandb_credentials_base_url": "api.wandb.ai"}, "wandb_credentials_base_url must be"),
    ("deploy.yml", {"wandb_credentials_base_url": "https://api.wandb.ai/graphql"}, "without a path"),
    ("deploy.yml", {"wandb_credentials_https_proxy": "proxy:3128"}, "is not a proxy URL"),
    ("deploy.yml", {"wandb_credentials_no_proxy": "a, b"}, "wandb_credentials_no_proxy must be"),
    ("deploy.yml", {"wandb_runtime_python": 3.1}, 'quote it, e.g. wandb_runtime_python: "3.1"'),
    ("deploy.yml", {"wandb_runtime_python": "3.99"}, "3.8 to 3.14"),
    (
        "deploy.yml",
        {"wandb_runtime_wandb_version": "9.9.9"},
        "wandb_runtime_wandb_version 9.9.9 does not exist",
    ),
    (
        "deploy.yml",
        {"wandb_runtime_wandb_version": "latest"},
        "wandb_runtime_wandb_version must be a version",
    ),
    ("deploy.yml", {"wandb_runtime_uv_version": "0.13"}, "wandb_runtime_uv_version must be a version"),
    ("deploy.yml", {"wandb_runtime_user": "root"}, "wandb_runtime_user must not be root"),
    ("deploy.yml", {"wandb_runtime_user": "Agent Smith"}, "wandb_runtime_user must be a user or group name"),
    (
        "deploy.yml",
        {"wandb_runtime_state_dir": "/var"},
        "wandb_runtime_state_dir is /var, a directory of the system",
    ),
    ("deploy.yml", {"wandb_runtime_venv": "venv"}, "wandb_runtime_venv must be an absolute path"),
    ("deploy.yml", {"wandb_runtime_home": "/var/lib/sweep-fleet/opt"}, "must not contain one another"),
    ("deploy.yml", {"wandb_runtime_extra_packages": ["torch=="]}, "not a requirement specifier"),
    ("deploy.yml", {"wandb_runtime_constraints": []}, "wandb_runtime_constraints must keep wandb=="),
    (
        "deploy.yml",
        {"wandb_runtime_uv_source": "github"},
        "wandb_runtime_uv_source must be one of pypi, controller",
    ),
    (
        "deploy.yml",
        {"wandb_runtime_uv_controller_path": "/nonexistent/uv"},
        "there is no executable uv at /nonexistent/uv",
    ),
    ("deploy.yml", {"wandb_runtime_environment": {"MY-PROXY": "x"}}, "not an environment variable name"),
    ("deploy.yml", {"wandb_runtime_index_url": "pypi.org"}, "wandb_runtime_index_url must be an http"),
    ("deploy.yml", {"wandb_runtime_wheelhouse": "perhaps"}, "wandb_runtime_wheelhouse"),
    (
        "deploy.yml",
        {"wandb_runtime_wheelhouse_cache": "cache/wheels"},
        "wandb_runtime_wheelhouse_cache must be an absolute path on the controller",
    ),
    ("deploy.yml", {"wandb_code_source": "svn"}, "wandb_code_source must be one of local, git"),
    (
        "deploy.yml",
        {"wandb_code_local_path": "/nonexistent"},
        "'/nonexistent' is not a directory on the controller",
    ),
    (
        "deploy.yml",
        {"wandb_code_source": "git", "wandb_code_git_repo": "not a url", "wandb_code_git_version": "v1"},
        "wandb_code_git_repo is not a git URL",
    ),
    (
        "deploy.yml",
        {"wandb_code_source": "git", "wandb_code_git_repo": "https://example.invalid/x.git"},
        "wandb_code_git_version is empty",
    ),
    (
        "deploy.yml",
        {"wandb_code_extra_paths": [{"src": "/etc/hostname", "dest": "/etc"}]},
        "must be a path inside",
    ),
    (
        "deploy.yml",
        {"wandb_code_extra_paths": [{"src": "/nonexistent", "dest": "d"}]},
        "does not exist on the",
    ),
    ("deploy.yml", {"wandb_code_extra_paths": [{"src": "/etc/hostname"}]}, "dest"),
    ("deploy.yml", {"wandb_code_requirements": "/abs/req.txt"}, "wandb_code_requirements must be auto, none"),
    ("deploy.yml", {"wandb_code_requirements": "req/gpu.txt"}, "is not a file in wandb_code_local_path"),
    ("deploy.yml", {"wandb_code_dest": "/var/lib/sweep-fleet/code"}, "must not contain one another"),
    ("deploy.yml", {"wandb_sweep_program": "train.py"}, "wandb_sweep_program 'train.py' is not a file"),
    ("deploy.yml", {"wandb_sweep_method": "grdi"}, "wandb_sweep_method must be one of grid, random, bayes"),
    (
        "deploy.yml",
        {"wandb_sweep_parameters": {"x": {"distribution": "int_uniform", "min": 0.5, "max": 3}}},
        "must be a whole number for int_uniform",
    ),
    (
        "deploy.yml",
        {"wandb_sweep_parameters": {"x": {"value": 1, "values": [1, 2]}}},
        "has both value and values",
    ),
    (
        "deploy.yml",
        {"wandb_sweep_parameters": {"x": {"values": [1, 2], "min": 0}}},
        "cannot also have min or max",
    ),
    (
        "deploy.yml",
        {"wandb_sweep_parameters": {"x": {"distribution": "categorical", "value": 1}}},
        "categorical takes values, not value",
    ),
    (
        "deploy.yml",
        {
            "wandb_sweep_method": "random",
            "wandb_sweep_parameters": {"x": {"values": [1, 2], "probabilities": [2, -1]}},
        },
        "probabilities must be numbers of at least 0",
    ),
    ("deploy.yml", {"wandb_sweep_parameters": {"9x": {"value": 1}}}, "W&B refuses this parameter name"),
    (
        "deploy.yml",
        {"wandb_sweep_early_terminate": {"type": "hyperband", "min_iter": 3, "eta2": 3}},
        "early_terminate has unknown keys eta2",
    ),
    ("deploy.yml", {"wandb_sweep_method": "bayes"}, "method bayes needs a metric"),
    ("deploy.yml", {"wandb_sweep_project": "team/project"}, "wandb_sweep_project 'team/project' has /"),
    ("deploy.yml", {"wandb_sweep_project": "p" * 129}, "W&B takes project names of at most 128"),
    ("deploy.yml", {"wandb_sweep_entity": "my team"}, "wandb_sweep_entity 'my team' has a space"),
    (
        "deploy.yml",
        {"wandb_sweep_id": "a/b/c/d"},
        "wandb_sweep_id must be ID, PROJECT/ID or ENTITY/PROJECT/ID",
    ),
    ("deploy.yml", {"wandb_sweep_template": "/nonexistent.j2"}, "is not a file on the controller"),
    ("deploy.yml", {"wandb_sweep_template": "BAD_TEMPLATE"}, "does not render to YAML"),
    ("deploy.yml", {"wandb_agent_count": 0}, "wandb_agent_count must be 1 to 64"),
    ("deploy.yml", {"wandb_agent_count": "two"}, "wandb_agent_count must be a whole number (got 'two')"),
    ("deploy.yml", {"wandb_agent_gpus": [0, 0]}, "wandb_agent_gpus lists GPU 0 more than once"),
    ("deploy.yml", {"wandb_agent_gpus": ["gpu0 1"]}, "each entry is a GPU index or UUID"),
    ("deploy.yml", {"wandb_agent_term_timeout": -5}, "wandb_agent_term_timeout must be at least 1"),
    ("deploy.yml", {"wandb_agent_stagger_seconds": -1}, "wandb_agent_stagger_seconds must be at least 0"),
    ("deploy.yml", {"wandb_agent_environment": {"WANDB_API_KEY": "x"}}, "goes in wandb_credentials_api_key"),
    (
        "deploy.yml",
        {"wandb_agent_environment": {"PATH": "/bin"}},
        "wandb_agent_environment.PATH cannot be set",
    ),
    (
        "deploy.yml",
        {"wandb_agent_environment": {"X": "a\nWANDB_BASE_URL=http://elsewhere"}},
        "wandb_agent_environment.X has a control character",
    ),
    ("deploy.yml", {"wandb_runtime_state_dir": "/var/lib/sweep fleet"}, "must be a plain path"),
    ("deploy.yml", {"wandb_code_dest": "/opt/sweep-fleet/code%i"}, "wandb_code_dest must be a plain path"),
    ("deploy.yml", {"wandb_credentials_dir": "/var/lib/sweep-fleet/etc"}, "must not contain one another"),
    ("deploy.yml", {"wandb_agent_ip_allow": ["metadata"]}, "wandb_agent_ip_allow has 'metadata'"),
    ("deploy.yml", {"wandb_runtime_user": "w" * 30}, "at most 29"),
    (
        "deploy.yml",
        {"wandb_runtime_index_url": "ftp://me:t0ken@pypi.example.invalid/simple"},
        "wandb_runtime_index_url must be an http:// or https:// URL",
    ),
    (
        "deploy.yml",
        {"wandb_code_local_path": "BAD_REQUIREMENTS"},
        "requirements.txt in wandb_code_local_path",
    ),
    (
        "deploy.yml",
        {"wandb_code_local_path": "LINKED_REQUIREMENTS"},
        "is a symbolic link: root installs it on every host",
    ),
    ("playbooks/stop.yml", {"sweep_fleet_serial": 0}, "0 would stop every host at once"),
    ("playbooks/stop.yml", {"sweep_fleet_serial": "abc"}, "sweep_fleet_serial must be a number of hosts"),
    ("playbooks/stop.yml", {"wandb_agent_drain_timeout": -1}, "wandb_agent_drain_timeout must be at least 0"),
    ("playbooks/stop.yml", {"wandb_agent_stop_mode": "gentle"}, "must be one of drain, preempt, kill"),
    ("playbooks/stop.yml", {"sweep_fleet_hosts": "nosuchgroup"}, "the pattern 'nosuchgroup' matches no host"),
    ("playbooks/start.yml", {"wandb_agent_gpus": [1, 1]}, "wandb_agent_gpus lists GPU 1 more than once"),
    ("playbooks/update.yml", {"sweep_fleet_serial": 0}, "0 would stop every host at once"),
    ("playbooks/sweep.yml", {}, "wandb_sweep_action is required here: give it with -e wandb_sweep_action="),
    ("playbooks/sweep.yml", {"wandb_sweep_action": "restart"}, "wandb_sweep_action must be one of"),
    (
        "playbooks/sweep.yml",
        {"wandb_sweep_action": "resume", "wandb_agent_count": 0},
        "wandb_agent_count must be",
    ),
    (
        "playbooks/status.yml",
        {"wandb_agent_status_file": "/nonexistent/s.json"},
        "does not exist on the controller",
    ),
    ("playbooks/remove.yml", {"wandb_code_keep": "maybe"}, "wandb_code_keep must be true or false"),
    ("playbooks/remove.yml", {"wandb_runtime_state_dir": "/"}, "wandb_runtime_state_dir is /, a directory"),
]
NEVER = ("Traceback", "argument_spec_data", "Unknown error", "validate_args_context")


def test_every_bad_input_is_refused_before_any_host_changes(site):
    bad_template = site.root / "bad-sweep.yaml.j2"
    bad_template.write_text(BAD_TEMPLATE)
    # Code whose requirements would make root install what their author chooses.
    places = {"BAD_TEMPLATE": bad_template}
    for name, requirements in (("BAD_REQUIREMENTS", "numpy==1.26.4\n-e .\n"), ("LINKED_REQUIREMENTS", None)):
        code = site.root / name.lower()
        shutil.copytree(SHARDS, code)
        (code / "requirements.txt").unlink()
        if requirements is None:
            (code / "requirements.txt").symlink_to("/etc/shadow")
        else:
            (code / "requirements.txt").write_text(requirements)
        places[name] = code
    before = {h.name: site.snapshot(h) for h in site.hosts}
    requests_before = len(site.standin.requests)

    def attempt(case):
        playbook, extra, _message = case
        extra = {k: (str(places[v]) if isinstance(v, str) and v in places else v) for k, v in extra.items()}
        return site.play(playbook, "-e", json.dumps(extra), check=False)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(attempt, BAD_INPUTS))
    wrong = []
    for (playbook, extra, message), result in zip(BAD_INPUTS, results, strict=True):
        out = result.stdout + result.stderr
        counts = recap(result.stdout, controller=True)  # nothing changed on the controller either
        problems = []
        if result.returncode == 0:
            problems.append("accepted")
        if message not in out:
            problems.append(f"no message {message!r}")
        if any(word in out for word in NEVER):
            problems.append("a dump or a traceback")
        if "t0ken" in out:
            problems.append("a token in a URL was shown")
        if any(c["changed"] for c in counts.values()):
            problems.append(f"changed something: {counts}")
        if problems:
            wrong.append(f"{playbook} {extra}: {'; '.join(problems)}\n{out[-1500:]}")
    assert wrong == [], "\n\n".join(wrong)
    assert len(site.standin.requests) == requests_before, "W&B was asked before the inputs were checked"
    assert {h.name: site.snapshot(h) for h in site.hosts} == before, "a host changed"
    print(f"{len(BAD_INPUTS)} bad inputs, each refused before any host changed")


def test_a_host_without_systemd_is_refused_by_name(site, host_image):
    name = f"{site.fleet.prefix}plain"
    podman(
        "run", "--detach", "--name", name, "--hostname", name, "--label", f"{LABEL}={site.fleet.name}",
        "--network", site.fleet.network, "--volume",
        f"{site.fleet.key_file}.pub:/home/{LOGIN_USER}/.ssh/authorized_keys:ro",
        host_image, "sh", "-c", "ssh-keygen -A && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e",
    )  # fmt: skip
    try:
        plain = Host(name=name, ip=site.fleet._ip(name))
        wait_until(lambda: site.fleet.ssh(plain, "true", check=False).returncode == 0, timeout=60,
                   what="ssh on the host without systemd")  # fmt: skip
        inventory = site.fleet.write_inventory(site.inventory / "mixed.ini", hosts=[site.hosts[0], plain])
        before = site.snapshot(site.hosts[0])
        result = site.play("deploy.yml", check=False, inventory=inventory)
        out = result.stdout + result.stderr
        assert result.returncode != 0
        assert f"{name}: Linux without systemd" in out, out[-3000:]
        assert not any(c["changed"] for c in recap(result.stdout).values())
        assert site.snapshot(site.hosts[0]) == before
    finally:
        podman("rm", "--force", "--time", "1", name, check=False)


def test_what_runs_write_is_never_installed_by_root(site):
    host = site.hosts[0]
    venv = "/opt/sweep-fleet/venv/bin/python"
    assert site.fleet.ssh(host, f"{venv} -c 'import six'", check=False).returncode != 0
    # A run (the service user) tries both ways to get a requirement installed by root.
    tried = site.fleet.ssh(
        host,
        "sudo -u wandb-1 sh -c 'echo six >> /opt/sweep-fleet/code/requirements.txt' 2>&1; "
        "sudo -u wandb-1 sh -c 'rm -f /var/lib/sweep-fleet/runs/1/requirements.txt' 2>&1; "
        "sudo -u wandb-1 sh -c 'echo six > /var/lib/sweep-fleet/runs/1/req.txt; "
        "mv -f /var/lib/sweep-fleet/runs/1/req.txt /var/lib/sweep-fleet/runs/1/requirements.txt' 2>&1; "
        "echo done",
        check=False,
    ).stdout
    # The code is root's; the link to its requirements, in the agent's sticky directory, too.
    assert tried.count("Permission denied") + tried.count("Operation not permitted") == 3, tried
    site.play("deploy.yml")
    assert site.fleet.ssh(host, f"{venv} -c 'import six'", check=False).returncode != 0, "root installed it"
    assert "six" not in site.fleet.ssh(host, "sudo cat /opt/sweep-fleet/code/requirements.txt").stdout
    link = site.fleet.ssh(host, "sudo stat -c '%U %N' /var/lib/sweep-fleet/runs/1/requirements.txt").stdout
    assert link.split()[0] == "root" and "-> '/opt/sweep-fleet/code/requirements.txt'" in link


def test_unusual_but_valid_inputs_keep_working(site):
    code = site.root / "my code"  # a space in the path
    shutil.copytree(SHARDS, code)
    local_key = "local-" + secrets.token_hex(20)  # a self-hosted server's key
    site.standin.other_keys.add(local_key)
    base = site.standin.url + "/"  # a trailing slash
    site.write_vars(
        vault_key=None,
        wandb_credentials_api_key=local_key,
        wandb_code_local_path=str(code),
        wandb_credentials_base_url=base,
        # The users' own sweep.yaml, as it is, used as the template.
        wandb_sweep_template=str(code / "sweep.yaml"),
        wandb_sweep_project="beauty-score",
    )
    site.play("deploy.yml")
    sweep = next(s for s in site.standin.sweeps.values() if s.config.get("name") == "beauty-score-shards")
    site.standin.wait_for(lambda s: sweep.state == "FINISHED", timeout=240, what="the users' sweep to finish")
    values = yaml.safe_load((SHARDS / "sweep.yaml").read_text())["parameters"]["data_path"]["values"]
    finished = sorted(
        r["params"]["data_path"] for r in site.standin.records(sweep.id) if r["state"] == "finished"
    )
    assert finished == sorted(values)


def test_remove_shows_no_secret_and_leaves_nothing(site):
    site.write_vars()
    result = site.play("playbooks/remove.yml", "-vvv", "--diff")
    assert site.leaks(result.stdout + result.stderr) == []
    for host in site.hosts:
        left = site.fleet.ssh(
            host,
            "ls -d /opt/sweep-fleet /etc/sweep-fleet /var/lib/sweep-fleet 2>/dev/null; "
            "getent passwd wandb wandb-1; getent group wandb wandb-1; true",
        ).stdout
        assert left.strip() == "", left
        # The whole journal of the module's life, every field (-o export), at its end.
        journal = site.fleet.ssh(host, "sudo journalctl --no-pager -o export", timeout=300).stdout
        assert "wandb-agent@1" in journal
        assert site.leaks(journal) == [], f"{host.name}: the journal"
