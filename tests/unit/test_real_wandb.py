"""Against the real W&B service: opt-in, skipped unless WANDB_API_KEY is set.

What the stand-in models, checked against the thing itself: the sweep module creates a
sweep, finds it again by its config, pauses, resumes and cancels it, refuses to resume a
cancelled one, and the agents' state check reads each state. WANDB_BASE_URL points at a
self-hosted server (default https://api.wandb.ai); SWEEP_FLEET_TEST_PROJECT names the
project (default sweep-fleet-test). The sweeps it makes are left cancelled.

    WANDB_API_KEY=... make unit PYTEST_ARGS="-k real_wandb"
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import sys

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sweep_fleet.wandb.plugins.modules import sweep as sweep_module

from support import REPO

KEY = os.environ.get("WANDB_API_KEY", "")
BASE_URL = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
PROJECT = os.environ.get("SWEEP_FLEET_TEST_PROJECT", "sweep-fleet-test")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not KEY, reason="opt-in: set WANDB_API_KEY to test against the real W&B"),
]

sys.path.insert(0, str(REPO / "roles" / "wandb_agent" / "files"))
import sweep_fleet_agent as launcher  # noqa: E402


def module(**args) -> dict:
    out = io.StringIO()
    with (
        patch_module_args({"base_url": BASE_URL, "api_key": KEY, **args}),
        contextlib.redirect_stdout(out),
        pytest.raises(SystemExit),
    ):
        sweep_module.main()
    return json.loads(out.getvalue())


def test_the_sweep_module_and_the_state_check_against_wandb():
    config = {
        "name": f"sweep-fleet-test-{secrets.token_hex(4)}",
        "program": "main.py",
        "method": "grid",
        "parameters": {"x": {"values": [1, 2, 3]}},
    }
    created = module(config=config, project=PROJECT)
    assert created.get("created") is True, created
    path = created["sweep_path"]
    try:
        again = module(config=config, project=PROJECT)
        assert (again["created"], again["sweep_path"]) == (False, path)
        assert again["run_count_expected"] == 3
        for state, wanted in (("paused", "PAUSED"), ("running", "RUNNING"), ("canceled", "CANCELED")):
            changed = module(sweep_id=path, state=state)
            assert changed["state"] == wanted, changed
            assert launcher.sweep_state(path, BASE_URL, KEY) == wanted
        refused = module(sweep_id=path, state="running")
        assert refused.get("failed"), "W&B keeps a cancelled sweep cancelled"
    finally:
        module(sweep_id=path, state="canceled")


def test_a_successor_seeded_with_a_finished_run_skips_its_value_on_wandb(tmp_path):
    """W&B's prior runs (priorRunsFilters), as the sweep module sends them: a grown grid's
    successor never hands out the value a finished run of the old sweep had."""
    import subprocess

    from support import VENV_BIN

    (tmp_path / "main.py").write_text(
        "import wandb\nrun = wandb.init()\nopen('ran.txt', 'a').write(f\"{run.config.x}\\n\")\nrun.finish()\n"
    )
    env = {
        **os.environ,
        "WANDB_API_KEY": KEY,
        "WANDB_BASE_URL": BASE_URL,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }

    def agent(path: str, count: int) -> list[str]:
        (tmp_path / "ran.txt").write_text("")
        argv = [str(VENV_BIN / "wandb"), "agent", "--count", str(count), path]
        subprocess.run(argv, cwd=tmp_path, env=env, check=True, timeout=600, capture_output=True)
        return (tmp_path / "ran.txt").read_text().split()

    base = {"name": f"sweep-fleet-successor-{secrets.token_hex(4)}", "program": "main.py", "method": "grid"}
    first = module(config={**base, "parameters": {"x": {"values": [1, 2]}}}, project=PROJECT)
    paths = [first["sweep_path"]]
    try:
        done = agent(first["sweep_path"], 1)
        grown = module(config={**base, "parameters": {"x": {"values": [1, 2, 3]}}}, project=PROJECT)
        paths.append(grown["sweep_path"])
        assert grown["created"] and grown["predecessor"]["sweep_path"] == first["sweep_path"], grown
        assert grown["successor"]["done"] == 1 and grown["successor"]["to_run"] == 2, grown
        ran = agent(grown["sweep_path"], 3)  # asks for 3; the grid has 2 left
        assert sorted(ran) == sorted({"1", "2", "3"} - set(done)), (done, ran)
    finally:
        for path in paths:
            module(sweep_id=path, state="canceled")
