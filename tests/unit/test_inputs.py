"""sweep-fleet's input rules (module_utils/inputs.py), with a controller that is faked."""

from __future__ import annotations

import pytest
import yaml
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import agent_host, inputs

from support import REPO, TEST_API_KEY


class FakeController(inputs.Controller):
    def __init__(self, dirs=(), files=(), tools=("rsync",), texts=None, links=()):
        self.dirs, self.files, self.tools = set(dirs), set(files), set(tools)
        self.texts, self.links = dict(texts or {}), set(links)
        self.files |= set(self.texts)

    def islink(self, path):
        return path in self.links

    def read(self, path, limit=4 * 1024 * 1024):
        return self.texts.get(path)

    def isdir(self, path):
        return path.rstrip("/") in self.dirs

    def isfile(self, path):
        return path in self.files

    def exists(self, path):
        return self.isdir(path) or self.isfile(path)

    def executable(self, path):
        return path in self.files

    def which(self, command):
        return command in self.tools


GOOD = {
    "wandb_runtime_user": "wandb",
    "wandb_runtime_group": "wandb",
    "wandb_runtime_home": "/opt/sweep-fleet",
    "wandb_runtime_state_dir": "/var/lib/sweep-fleet",
    "wandb_runtime_venv": "/opt/sweep-fleet/venv",
    "wandb_runtime_uv_path": "/usr/local/bin/uv",
    "wandb_runtime_python": "system",
    "wandb_runtime_uv_version": "0.13.8",
    "wandb_runtime_wandb_version": "0.31.0",
    "wandb_runtime_constraints": ["wandb==0.31.0"],
    "wandb_runtime_extra_packages": ["torch==2.5.1"],
    "wandb_runtime_environment": {"HTTPS_PROXY": "http://u:p@proxy:3128"},
    "wandb_credentials_api_key": TEST_API_KEY,
    "wandb_credentials_base_url": "https://api.wandb.ai",
    "wandb_credentials_https_proxy": "",
    "wandb_credentials_dir": "/etc/sweep-fleet",
    "wandb_code_source": "local",
    "wandb_code_local_path": "/home/me/my code",
    "wandb_code_dest": "/opt/sweep-fleet/code",
    "wandb_code_group": "wandb",
    "wandb_code_requirements": "auto",
    "wandb_code_extra_paths": [{"src": "/data/shards/", "dest": "datasets"}],
    "wandb_sweep_id": "",
    "wandb_sweep_project": "beauty-score",
    "wandb_agent_count": 2,
    "wandb_agent_gpus": [],
    "wandb_agent_term_timeout": 60,
    "wandb_agent_environment": {"SHARD_SECONDS": 1},
}
ROLES = ["wandb_runtime", "wandb_credentials", "wandb_code", "wandb_sweep", "wandb_agent"]
CONTROLLER = FakeController(dirs={"/home/me/my code"}, files={"/data/shards/"})


def problems(**change):
    values = {**GOOD, **change}
    return inputs.problems(ROLES, values, CONTROLLER)


def test_good_values_have_no_problem():
    assert inputs.problems(ROLES, GOOD, FakeController(dirs={"/home/me/my code", "/data/shards"})) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"wandb_runtime_user": "root"}, "wandb_runtime_user must not be root"),
        ({"wandb_runtime_user": "Wandb User"}, "wandb_runtime_user must be a user or group name"),
        ({"wandb_runtime_state_dir": "/var"}, "wandb_runtime_state_dir is /var, a directory of the system"),
        ({"wandb_runtime_home": "opt/sf"}, "wandb_runtime_home must be an absolute path"),
        ({"wandb_runtime_home": "/var/lib/sweep-fleet/opt"}, "must not contain one another"),
        ({"wandb_runtime_python": 3.1}, 'quote the version, e.g. wandb_runtime_python: "3.10"'),
        ({"wandb_runtime_python": "3.99"}, "3.8 to 3.14"),
        ({"wandb_runtime_wandb_version": "latest"}, "wandb_runtime_wandb_version must be a version"),
        ({"wandb_runtime_extra_packages": ["torch=="]}, "'torch==', which is not a requirement specifier"),
        ({"wandb_runtime_constraints": ["torch==2.5.1"]}, "must keep wandb==0.31.0"),
        ({"wandb_runtime_environment": {"WANDB_API_KEY": "x"}}, "the key goes in wandb_credentials_api_key"),
        ({"wandb_credentials_api_key": ""}, "wandb_credentials_api_key is empty"),
        ({"wandb_credentials_api_key": "a b" * 20}, "has a space or line break inside"),
        ({"wandb_credentials_api_key": "short"}, "is not a W&B API key"),
        (
            {"wandb_credentials_base_url": "api.wandb.ai"},
            "wandb_credentials_base_url must be the W&B server's",
        ),
        ({"wandb_credentials_base_url": "https://x/graphql"}, "without a path"),
        ({"wandb_credentials_https_proxy": "proxy:3128"}, "wandb_credentials_https_proxy is not a proxy URL"),
        ({"wandb_code_local_path": ""}, "wandb_code_local_path is empty"),
        ({"wandb_code_local_path": "/nowhere"}, "'/nowhere' is not a directory on the controller"),
        (
            {
                "wandb_code_source": "git",
                "wandb_code_git_repo": "github.com/x/y",
                "wandb_code_git_version": "v1",
            },
            "wandb_code_git_repo is not a git URL",
        ),
        (
            {
                "wandb_code_source": "git",
                "wandb_code_git_repo": "https://h/r.git",
                "wandb_code_git_version": "",
            },
            "wandb_code_git_version is empty",
        ),
        ({"wandb_code_dest": "/var/lib/sweep-fleet/code"}, "must not contain one another"),
        ({"wandb_code_extra_paths": [{"src": "/data/shards/", "dest": "../etc"}]}, "must be a path inside"),
        ({"wandb_code_extra_paths": [{"src": "/missing", "dest": "d"}]}, "'/missing' does not exist"),
        ({"wandb_code_requirements": "/abs/req.txt"}, "wandb_code_requirements must be auto, none"),
        ({"wandb_sweep_id": "a/b/c/d"}, "wandb_sweep_id must be ID, PROJECT/ID or ENTITY/PROJECT/ID"),
        ({"wandb_sweep_id": "team/pro ject/abc123"}, "which W&B refuses in project names"),
        ({"wandb_sweep_project": "a/b"}, "wandb_sweep_project 'a/b' has /"),
        ({"wandb_sweep_project": "p" * 129}, "at most 128"),
        ({"wandb_agent_count": 0}, "wandb_agent_count must be 1 to 64"),
        ({"wandb_agent_gpus": ["0", "1", "0"]}, "lists GPU 0 more than once"),
        ({"wandb_agent_gpus": ["0,1", "1,2"]}, "lists GPU 1 more than once"),
        ({"wandb_agent_gpus": ["gpu 0"]}, "each entry is a GPU index or UUID"),
        ({"wandb_agent_term_timeout": 0}, "wandb_agent_term_timeout must be at least 1"),
        ({"wandb_agent_min_free_mb": -1}, "wandb_agent_min_free_mb must be at least 0 MB (0: no check)"),
        ({"wandb_agent_max_consecutive_failures": -2}, "max_consecutive_failures must be at least 0 runs"),
        ({"wandb_agent_environment": {"MY-VAR": 1}}, "'MY-VAR', which is not an environment variable name"),
        ({"wandb_agent_environment": {"PATH": "/bin"}}, "wandb_agent_environment.PATH cannot be set here"),
        (
            {"wandb_agent_environment": {"X": "a\nWANDB_BASE_URL=http://evil"}},
            "wandb_agent_environment.X has a control",
        ),
        ({"wandb_runtime_environment": {"X": "a\rb"}}, "wandb_runtime_environment.X has a control character"),
        ({"wandb_runtime_state_dir": "/var/lib/sweep fleet"}, "wandb_runtime_state_dir must be a plain path"),
        ({"wandb_runtime_home": "/opt/sweep-fleet%i"}, "wandb_runtime_home must be a plain path"),
        ({"wandb_code_dest": "/opt/code\n[Service]"}, "wandb_code_dest must be a plain path"),
        (
            {"wandb_credentials_dir": "/var/lib/sweep-fleet/etc"},
            "wandb_credentials_dir (/var/lib/sweep-fleet/etc) and",
        ),
        (
            {"wandb_agent_credentials_dir": "/var/lib/sweep-fleet/runs/etc"},
            "wandb_agent_credentials_dir (/var",
        ),
        ({"wandb_agent_home": "/var/lib/sweep-fleet"}, "wandb_agent_home (/var/lib/sweep-fleet) and"),
        ({"wandb_runtime_user": "a" * 30}, "at most 29 (each agent's account adds its number)"),
        ({"wandb_agent_ip_allow": ["metadata.google.internal"]}, "wandb_agent_ip_allow has 'metadata.google"),
        ({"wandb_runtime_uv_sha256": {"x86_64": "abc"}}, "wandb_runtime_uv_sha256.x86_64 must be a sha256"),
        ({"sweep_fleet_serial": 0}, "0 would stop every host at once"),
        ({"sweep_fleet_serial": "all"}, "sweep_fleet_serial must be a number of hosts"),
    ],
)
def test_each_rule_names_the_variable_and_the_fix(change, message):
    found = problems(**change)
    assert any(message in p for p in found), found


@pytest.mark.parametrize(
    "change",
    [
        {"wandb_code_local_path": "/home/me/my code"},  # spaces in a path
        {"wandb_credentials_base_url": "https://wandb.example.com:8080/"},  # a trailing slash
        {"wandb_credentials_api_key": "local-" + "0123456789abcdef" * 3},  # a self-hosted server's key
        {"wandb_credentials_api_key": TEST_API_KEY + "\n"},  # echo KEY | ansible-vault encrypt_string
        {"wandb_agent_gpus": ["0", "1", "GPU-4f2c3a1b-aaaa-bbbb-cccc-0123456789ab"]},
        {"sweep_fleet_serial": "25%"},
        {"wandb_runtime_python": "3.12"},
        {"wandb_credentials_https_proxy": "http://user:pa55@proxy.example.com:3128"},
        {"wandb_runtime_index_url": "https://__token__:t0ken@pypi.example.com/simple"},  # a private index
        {"wandb_agent_environment": {"WIN_PATH": "C:\\Program Files\\x", "Q": 'say "hi" $HOME'}},
        {"wandb_agent_ip_allow": ["169.254.169.254", "fe80::/10"]},
        {"wandb_runtime_state_dir": "/data/sweep-fleet", "wandb_agent_state_dir": "/data/sweep-fleet"},
    ],
)
def test_unusual_but_valid_values_pass(change):
    assert problems(**change) == []


def test_tokens_in_index_and_git_urls_never_appear_in_messages():
    index = "ftp://__token__:t0ken@pypi.example.com/simple?key=k3y"
    found = " ".join(problems(wandb_runtime_index_url=index))
    assert "wandb_runtime_index_url must be" in found and "t0ken" not in found and "k3y" not in found
    assert "ftp://***@pypi.example.com/simple?***" in found
    repo = "github.com:me/repo.git?token=t0ken"
    found = " ".join(problems(wandb_code_source="git", wandb_code_git_repo=repo, wandb_code_git_version="v1"))
    assert "wandb_code_git_repo is not a git URL" in found and "t0ken" not in found


LOCAL = "/home/me/my code"


@pytest.mark.parametrize(
    ("texts", "links", "message"),
    [
        (
            {f"{LOCAL}/requirements.txt": "numpy==1.26\n-e .\n"},
            (),
            "requirements.txt in wandb_code_local_path",
        ),
        ({f"{LOCAL}/requirements.txt": "torch @ https://evil.example/t.whl\n"}, (), "line 1 is a URL"),
        (
            {f"{LOCAL}/pyproject.toml": '[project]\nname="x"\ndynamic=["dependencies"]\n'},
            (),
            "dynamic depend",
        ),
        (
            {},
            (f"{LOCAL}/requirements.txt",),
            "requirements.txt in wandb_code_local_path (/home/me/my code) is a sym",
        ),
    ],
)
def test_the_code_requirements_ask_for_packages_only(texts, links, message):
    controller = FakeController(dirs={LOCAL, "/data/shards"}, texts=texts, links=links)
    found = inputs.problems(ROLES, GOOD, controller)
    assert any(message in p for p in found), found


def test_a_resolver_at_a_link_local_address_needs_it_opened():
    facts = {"system": "Linux", "service_mgr": "systemd", "dns": {"nameservers": ["169.254.169.254"]}}
    assert inputs.platform_problem(facts, {}, runs_agents=False) is None, "a stop needs no resolver"
    problem = inputs.platform_problem(facts, {}, runs_agents=True)
    assert "resolves names through 169.254.169.254" in problem and "wandb_agent_ip_allow" in problem
    assert (
        inputs.platform_problem(facts, {"wandb_agent_ip_allow": ["169.254.169.254"]}, runs_agents=True)
        is None
    )
    local = {**facts, "dns": {"nameservers": ["127.0.0.53", "fe80::1%eth0"]}}
    assert "fe80::1%eth0" in inputs.platform_problem(local, {}, runs_agents=True)
    assert inputs.platform_problem(local, {"wandb_agent_ip_allow": ["fe80::/10"]}, runs_agents=True) is None


def test_secrets_never_appear_in_messages():
    key = "s3cret" + "x" * 40 + " y"
    assert key not in " ".join(problems(wandb_credentials_api_key=key))
    proxy = "http://user:pa55word@proxy example:3128"
    assert "pa55word" not in " ".join(problems(wandb_credentials_https_proxy=proxy))
    assert "pa55word" not in " ".join(problems(wandb_credentials_base_url="https://u:pa55word@h/x"))


def test_the_program_must_be_in_the_pushed_code():
    values = inputs.Values(
        {**GOOD}, FakeController(dirs={"/home/me/my code"}, files={"/home/me/my code/main.py"})
    )
    assert list(inputs.deploy_rules(values, {"program": "main.py"})) == []
    (problem,) = inputs.deploy_rules(values, {"program": "train.py"})
    assert "wandb_sweep_program 'train.py' is not a file in wandb_code_local_path" in problem


def test_rules_skip_what_an_entry_point_does_not_use():
    # remove.yml checks only the paths it removes: no code path, no key.
    assert (
        inputs.problems(["wandb_code"], {"wandb_code_dest": "/opt/sweep-fleet/code"}, FakeController()) == []
    )
    # status.yml on a SLURM login node: the directory and the job's name only.
    slurm_status = {"wandb_slurm_dir": "/shared/sf", "wandb_slurm_job_name": "sweep-fleet"}
    assert inputs.problems(["wandb_slurm"], slurm_status, FakeController()) == []


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        ({"system": "Linux", "service_mgr": "systemd"}, None),
        (
            {"system": "Linux", "service_mgr": "sysvinit"},
            "Linux without systemd (its service manager is sysvinit)",
        ),
        (
            {"system": "Darwin", "distribution": "MacOSX", "distribution_version": "14.1"},
            "macOS (MacOSX 14.1)",
        ),
        ({"system": "Win32NT", "os_family": "Windows", "architecture2": "x86_64"}, None),
    ],
)
def test_platform(facts, message):
    problem = inputs.platform_problem(facts)
    if message is None:
        assert problem is None
    else:
        assert (message in problem and "is not supported" in problem) or "systemd" in problem


WINDOWS_11 = {
    "system": "Win32NT",
    "os_family": "Windows",
    "architecture": "64-bit",
    "architecture2": "x86_64",
}
WINDOWS_OK = {
    "wandb_runtime_python": "system",
    "wandb_runtime_windows_python": r"C:\Program Files\Python312\python.exe",
    "wandb_runtime_windows_home": r"C:\ProgramData\sweep-fleet",
    "wandb_code_source": "local",
    "wandb_code_extra_paths": [],
}


@pytest.mark.parametrize(
    ("facts", "changes", "says"),
    [
        ({"architecture2": "arm64"}, {}, "its CPU is arm64: Windows hosts need x86_64"),
        ({}, {"wandb_runtime_python": "3.12"}, "set wandb_runtime_python: system for them"),
        (
            {},
            {"wandb_runtime_windows_python": "/usr/bin/python3"},
            "wandb_runtime_windows_python must be an absolute Windows path",
        ),
        (
            {},
            {"wandb_runtime_windows_home": "ProgramData"},
            "wandb_runtime_windows_home must be an absolute Windows path",
        ),
        ({}, {"wandb_code_source": "git"}, "set wandb_code_source: local"),
        (
            {},
            {"wandb_code_extra_paths": [{"src": "/data", "dest": "data"}]},
            "wandb_code_extra_paths is not supported",
        ),
    ],
)
def test_a_windows_host_gets_one_message_naming_what_its_path_cannot_take(facts, changes, says):
    assert inputs.platform_problem(WINDOWS_11, WINDOWS_OK) is None
    problem = inputs.platform_problem({**WINDOWS_11, **facts}, {**WINDOWS_OK, **changes})
    assert problem.startswith("Windows host: ") and says in problem
    # A path with spaces is not a problem.
    assert (
        inputs.platform_problem(WINDOWS_11, {**WINDOWS_OK, "wandb_runtime_windows_home": r"D:\ML jobs\fleet"})
        is None
    )


WINDOWS_FACTS = {"system": "Win32NT", "os_family": "Windows"}
LINUX_FACTS = {"system": "Linux", "os_family": "Debian"}


@pytest.mark.parametrize(
    "command, facts, message",
    [
        (["${env}", "python", "${program}", "${args}"], WINDOWS_FACTS, "runs the base interpreter"),
        (["${interpreter}", "${program}", "${args}"], WINDOWS_FACTS, "runs the base interpreter"),
        (["py.exe", "${program}"], WINDOWS_FACTS, "runs the base interpreter"),
        (["/opt/venv/bin/python", "${program}"], WINDOWS_FACTS, "the Linux path '/opt/venv/bin/python'"),
        ([r"C:\venv\Scripts\python.exe", "${program}"], LINUX_FACTS, "the Windows path"),
        (["python.exe", "${program}"], LINUX_FACTS, "the Windows path"),
    ],
)
def test_a_run_command_that_misses_the_venv_on_the_host_is_named(command, facts, message):
    problem = inputs.command_problem(command, facts)
    assert problem and problem.startswith("wandb_sweep_command") and message in problem, problem
    assert "default command" in problem


@pytest.mark.parametrize("facts", [WINDOWS_FACTS, LINUX_FACTS])
def test_the_default_run_command_runs_the_venv_on_every_host(facts):
    role = REPO / "roles" / "wandb_sweep"
    python = yaml.safe_load((role / "defaults" / "main.yml").read_text())["wandb_sweep_python"]
    assert python == f"{agent_host.VENV_LINK}/bin/python", "the venv link agent_units makes in the code"
    assert (
        "wandb_sweep_command or [wandb_sweep_python, '${program}', '${args}']"
        in (role / "templates" / "sweep.yaml.j2").read_text()
    )
    assert inputs.command_problem([python, "${program}", "${args}"], facts) is None
    # python on Linux is the venv's (the unit puts its bin first on PATH): allowed there
    assert inputs.command_problem(["${env}", "python", "${program}"], LINUX_FACTS) is None


@pytest.mark.parametrize(
    ("rc", "stdout", "message"),
    [
        (2, "", "does not run there"),
        (0, "3.9\r\n", "is Python 3.9, and the agents need 3.10 to 3.14"),
        (0, "2.7\r\n", "is Python 2.7"),
        (0, "", "is Python ?"),
        (0, "3.12\r\n", None),
    ],
)
def test_a_windows_hosts_python_is_one_the_agents_can_use(rc, stdout, message):
    path = r"C:\Program Files\Python39\python.exe"
    problem = inputs.windows_python_problem(path, rc, stdout)
    if message is None:
        assert problem is None
    else:
        assert message in problem and "wandb_runtime_windows_python" in problem
        assert "winget install --scope machine" in problem


def test_the_windows_python_range_starts_at_the_pinned_wandbs_requires_python():
    import importlib.metadata

    defaults = yaml.safe_load((REPO / "roles" / "wandb_runtime" / "defaults" / "main.yml").read_text())
    meta = importlib.metadata.metadata("wandb")
    assert meta["Version"] == defaults["wandb_runtime_wandb_version"], "the controller's wandb is the hosts'"
    assert meta["Requires-Python"] == f">=3.{inputs.WINDOWS_PYTHON_MINORS[0]}"
    first, last = inputs.WINDOWS_PYTHON_MINORS[0], inputs.WINDOWS_PYTHON_MINORS[-1]
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"The host needs Python 3.{first} to 3.{last} installed" in readme, "the README says the range"


SLURM_GOOD = {
    "wandb_slurm_dir": "/shared/alice/sweep fleet",  # spaces in the path
    "wandb_slurm_agents": 12,
    "wandb_slurm_job_name": "beauty-score",
    "wandb_slurm_partition": "gpu",
    "wandb_slurm_account": "",
    "wandb_slurm_qos": "",
    "wandb_slurm_time_limit": "2-00:00:00",
    "wandb_slurm_gres": "gpu:1",
    "wandb_slurm_cpus_per_task": 4,
    "wandb_slurm_mem": "32G",
    "wandb_slurm_extra_options": ["--constraint=a100"],
    "wandb_slurm_setup": ["module load cuda/12.4"],
    "wandb_slurm_signal_seconds": 300,
    "wandb_slurm_term_timeout": 120,
    "wandb_slurm_max_requeues": 20,
}


def slurm_problems(**change):
    return inputs.problems(["wandb_slurm"], {**SLURM_GOOD, **change}, CONTROLLER)


@pytest.mark.parametrize("limit", ["2-00:00:00", "120", "90:30", "12:00:00", "1-12", "unlimited", ""])
def test_slurm_inputs_that_sbatch_takes_pass(limit):
    assert slurm_problems(wandb_slurm_time_limit=limit) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"wandb_slurm_dir": ""},
            "wandb_slurm_dir is empty: give the absolute path of a directory on the shared",
        ),
        ({"wandb_slurm_dir": "sweep-fleet"}, "wandb_slurm_dir must be an absolute path"),
        ({"wandb_slurm_dir": "/shared/../etc"}, "wandb_slurm_dir must be an absolute path without .."),
        ({"wandb_slurm_agents": 0}, "wandb_slurm_agents must be 1 to 10000"),
        ({"wandb_slurm_job_name": "my sweep"}, "wandb_slurm_job_name must be 1 to 64 letters"),
        ({"wandb_slurm_time_limit": "2 days"}, "wandb_slurm_time_limit '2 days' is not a SLURM time"),
        ({"wandb_slurm_partition": "gpu --uid=0"}, "wandb_slurm_partition must be one word"),
        (
            {"wandb_slurm_signal_seconds": 60},
            "wandb_slurm_signal_seconds (60) must exceed wandb_slurm_term_timeout",
        ),
        ({"wandb_slurm_max_requeues": -1}, "wandb_slurm_max_requeues must be 0 or more"),
        ({"wandb_slurm_extra_options": ["constraint=a100"]}, "each entry is one sbatch option"),
        (
            {"wandb_slurm_setup": ["module load a\nrm -rf ~"]},
            "wandb_slurm_setup: give one shell line per entry",
        ),
    ],
)
def test_each_slurm_rule_names_the_variable_and_the_fix(change, message):
    found = slurm_problems(**change)
    assert any(message in p for p in found), found


LINUX = {"system": "Linux", "os_family": "Debian", "service_mgr": "systemd"}


@pytest.mark.parametrize(
    ("facts", "stdout", "message"),
    [
        (LINUX, "2000\n/usr/bin/sbatch\n/usr/bin/squeue\n/usr/bin/scancel\n/usr/bin/scontrol", None),
        # A login node need not run systemd: its agents are SLURM's jobs.
        ({**LINUX, "service_mgr": "openrc"}, "2000\n/usr/bin/sbatch", None),
        (LINUX, "0\n/usr/bin/sbatch", "the login user is root: SLURM jobs run as the user who submits"),
        (
            LINUX,
            "2000\nmissing sbatch\n/usr/bin/squeue\nmissing scontrol",
            "not on the login user's PATH: sbatch, scontrol",
        ),
        (
            {"system": "Win32NT", "os_family": "Windows"},
            "",
            "a SLURM login node runs Linux (this one runs Win32NT)",
        ),
    ],
)
def test_a_slurm_login_node_is_checked_for_its_user_and_slurms_commands(facts, stdout, message):
    found = inputs.slurm_login_problem(facts, {"rc": 0, "stdout": stdout})
    assert found == message if message is None else message in found
