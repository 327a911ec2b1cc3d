"""The status table filter, and the agent_info module: its parsing of the agent's run files and its
wait for a drain."""

from __future__ import annotations

import os

from ansible_collections.sweep_fleet.wandb.plugins.filter.fleet_status import fleet_status_table
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import agent_runs

REPORT = {
    "agents": [
        {
            "host": "gpu-1",
            "instance": "1",
            "active_state": "active",
            "sub_state": "running",
            "since": "Mon 2026-11-23 14:02:11 UTC",
            "runs": [{"id": "abc123", "pid": 10, "params": {"lr": 0.01, "data_path": "datasets/part1.csv"}}],
            "runs_ended": 4,
            "last_error": "",
        },
        {
            "host": "gpu-2",
            "instance": "1",
            "active_state": "failed",
            "sub_state": "failed",
            "since": "Mon 2026-11-23 13:00:00 UTC",
            "runs": [],
            "runs_ended": 0,
            "last_error": "Error: Sweep e/p/x is not running",
        },
    ],
    "sweep": {
        "path": "e/p/x",
        "state": "RUNNING",
        "url": "https://wandb.ai/e/p/sweeps/x",
        "run_count": 6,
        "run_count_expected": 12,
        "runs_by_state": {"finished": 4, "running": 1, "crashed": 1},
    },
}


def test_table_has_one_line_per_agent_then_the_sweep():
    lines = fleet_status_table(REPORT).splitlines()
    assert lines[0].split()[:5] == ["HOST", "AGENT", "STATE", "SINCE", "RUN"]
    assert lines[1].split()[:7] == [
        "gpu-1",
        "1",
        "active/running",
        "2026-11-23",
        "14:02:11",
        "abc123",
        "lr=0.01",
    ]
    assert "data_path=datasets/part1.csv" in lines[1]
    assert lines[2].startswith("gpu-2") and lines[2].endswith("Error: Sweep e/p/x is not running")
    # Columns line up: every row's RUN column starts where the header's does.
    column = lines[0].index("RUN")
    assert lines[1][column:].startswith("abc123") and lines[2][column:].startswith("-")
    assert lines[-2] == "sweep e/p/x: RUNNING, 4/12 runs finished (1 crashed, 1 running)"
    assert lines[-1] == "https://wandb.ai/e/p/sweeps/x"


def test_a_successor_sweep_names_the_sweep_it_follows_and_its_running_runs():
    before = {"sweep_path": "e/p/old", "state": "RUNNING", "running": 2}
    lines = fleet_status_table({**REPORT, "sweep": {**REPORT["sweep"], "predecessor": before}}).splitlines()
    assert lines[-1] == "it follows sweep e/p/old: RUNNING, 2 run(s) still running (stopped once they end)"
    done = {**before, "state": "FINISHED", "running": 0}
    lines = fleet_status_table({**REPORT, "sweep": {**REPORT["sweep"], "predecessor": done}}).splitlines()
    assert lines[-1] == "it follows sweep e/p/old: FINISHED"


def test_table_without_agents_or_a_known_total():
    text = fleet_status_table({"agents": [], "sweep": {**REPORT["sweep"], "run_count_expected": None}})
    assert "(no agents)" in text
    assert "RUNNING, 4 runs finished" in text


def test_run_parameters_are_read_without_pyyaml(tmp_path, monkeypatch):
    config = tmp_path / "config-abc123.yaml"
    config.write_text(
        "wandb_version: 1\n\ndata_path:\n  value: datasets/part1.csv\nlr:\n  value: 0.01\n"
        "epochs:\n  value: 8\nflag:\n  value: true\nname:\n  value: 'a: b'\n"
    )
    expected = {"data_path": "datasets/part1.csv", "lr": 0.01, "epochs": 8, "flag": True, "name": "a: b"}
    assert agent_runs._params(config.read_text()) == expected
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # a host without PyYAML
    assert agent_runs._params(config.read_text()) == expected


def test_run_parameters_with_yaml_aliases_are_not_expanded():
    """A run wrote the file: a few lines of aliases would expand into more than any memory
    once the result is serialized. They are refused: no parameters."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    bomb += "lr:\n  value: *u\n"
    assert agent_runs._params(bomb) == {}
    assert agent_runs._params("lr:\n  value: &v 0.1\nseed:\n  value: 3\n") == {"lr": 0.1, "seed": 3}


def test_the_sweep_is_read_from_the_agents_environment_file(tmp_path):
    env = tmp_path / "agent.env"
    env.write_text("# managed\nSWEEP_FLEET_SWEEP=e/p/x1y2\nWANDB_MODE=offline\n")
    assert agent_runs._env_value(str(env), "SWEEP_FLEET_SWEEP") == "e/p/x1y2"
    assert agent_runs._env_value(str(tmp_path / "missing"), "SWEEP_FLEET_SWEEP") == ""


def test_a_sweep_wandb_cannot_tell_is_marked_unreachable_under_the_agents():

    report = {
        "agents": [
            {"host": "h1", "instance": "1", "active_state": "active", "sub_state": "running", "runs": []}
        ],
        "sweep": {
            "path": "e/p/abc",
            "state": "UNREACHABLE",
            "error": "cannot reach the W&B API at https://w",
        },
    }
    table = fleet_status_table(report).splitlines()
    assert table[1].startswith("h1") and "active/running" in table[1]
    assert table[-1] == "sweep e/p/abc: UNREACHABLE (cannot reach the W&B API at https://w)"


class _Journal:
    """Stands in for AnsibleModule where Host.last_error asks journalctl."""

    def __init__(self, text: str):
        self.text = text
        self.commands: list[list[str]] = []

    def run_command(self, command):
        self.commands.append(command)
        return 0, self.text, ""


def test_last_error_is_the_launchers_reason_over_later_run_output_and_systemd_lines():
    journal = _Journal(
        "sweep-fleet-agent: code linked into /var/lib/sweep-fleet/runs/1: +train.py\n"
        "Traceback (most recent call last):\n"
        "sweep-fleet-agent: error: disk full: /var/lib/sweep-fleet/runs/1 has 0 MB free\n"
        "OSError: [Errno 28] No space left on device\n"
        "    raise error\n"
        "wandb-agent@1.service: Main process exited, code=exited, status=79/n/a\n"
        "wandb-agent@1.service: Failed with result 'exit-code'.\n"
    )
    host = agent_runs.Host(journal)
    invocation = "0f" * 16
    assert host.last_error("wandb-agent@1.service", 300, invocation) == (
        "error: disk full: /var/lib/sweep-fleet/runs/1 has 0 MB free"
    )
    assert f"_SYSTEMD_INVOCATION_ID={invocation}" in journal.commands[0]  # the unit's last start
    # Without a word from the launcher: the runs' last error, never systemd's line.
    journal.text = "ValueError: bad lr\nwandb-agent@1.service: Failed with result 'exit-code'.\n"
    assert host.last_error("wandb-agent@1.service", 300, "") == "ValueError: bad lr"
    assert journal.commands[1][-2:] == ["--unit", "wandb-agent@1.service"]


def test_started_runs_are_the_agents_config_files_of_the_sweep(tmp_path):
    from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import started_runs

    folder = tmp_path / "wandb" / "sweep-abc"
    folder.mkdir(parents=True)
    for index, run in enumerate(["r1", "r2"]):
        (folder / f"config-{run}.yaml").write_text("lr: {value: 0.1}\n")
        os.utime(folder / f"config-{run}.yaml", (1000 + index, 1000 + index))
    (folder / "config-r3.json").write_text("{}")  # the ${args_json_file}, not a start
    (tmp_path / "wandb" / "sweep-other").mkdir()
    (tmp_path / "wandb" / "sweep-other" / "config-x.yaml").write_text("")
    assert started_runs(str(tmp_path), "abc") == {"r1": 1000.0, "r2": 1001.0}
    assert started_runs(str(tmp_path), "none") == {}


class _Systemctl:
    """A module whose systemctl answers each SubState query from ``answers`` in turn (the
    last one for ever after), counting the queries."""

    def __init__(self, *answers: str):
        self.answers = list(answers)
        self.queries = 0

    def run_command(self, argv):
        assert argv[:4] == ["systemctl", "show", "--property=SubState", "--value"], argv
        self.queries += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return 0, answer, ""


def test_wait_drained_returns_once_no_unit_is_running(monkeypatch):
    monkeypatch.setattr(agent_runs.time, "sleep", lambda _s: None)
    module = _Systemctl("running\ndead\n", "running\ndead\n", "dead\ndead\n", "running\n")
    agent_runs.Host(module).wait_drained(["wandb-agent@1.service", "wandb-agent@2.service"], 60)
    assert module.queries == 3


def test_wait_drained_gives_up_at_its_deadline(monkeypatch):
    clock = iter(range(0, 1000, 10))  # each look at the clock: ten seconds later
    monkeypatch.setattr(agent_runs.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(agent_runs.time, "sleep", lambda _s: None)
    module = _Systemctl("running\n")
    agent_runs.Host(module).wait_drained(["wandb-agent@1.service"], 30)
    assert module.queries == 2  # 10 and 20 s after the start; at 30 s the deadline has come
