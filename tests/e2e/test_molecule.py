"""The molecule scenario: every role on one host, check mode -> converge -> idempotence ->
testinfra verify (one test file per role's contract).

Steps run one by one so that the W&B API stand-in can be started where the
scenario's host reaches it, on the scenario's own network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from fleet.fleet import podman, podman_env
from standin import StandIn
from support import REPO, TEST_API_KEY, VENV_BIN

pytestmark = pytest.mark.fleet

SCENARIO = "default"
NETWORK = "molecule-fleet"  # .config/molecule/config.yml
ROLE_TESTS = ["test_runtime.py", "test_credentials.py", "test_code.py", "test_sweep.py", "test_agent.py"]


def molecule(step: str, scenario: str, env: dict, *extra: str) -> str:
    started = time.monotonic()
    proc = subprocess.run(
        [str(VENV_BIN / "molecule"), step, "-s", scenario, *extra],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=900,
    )
    print(f"molecule {step} -s {scenario}: {time.monotonic() - started:.1f}s", flush=True)
    if proc.returncode != 0:
        journal = ""
        if step in ("converge", "idempotence", "verify"):
            journal = podman(
                "exec",
                "molecule-fleet",
                "journalctl",
                "-u",
                "wandb-agent@*",
                "--no-pager",
                "-n",
                "60",
                check=False,
            ).stdout
        pytest.fail(
            f"molecule {step} -s {scenario} failed ({proc.returncode}):\n{proc.stdout[-15000:]}\n"
            f"{proc.stderr[-5000:]}\n{journal}"
        )
    return proc.stdout + proc.stderr


def test_scenario(host_image):
    env = podman_env() | {
        "SWEEP_FLEET_IMAGE": host_image,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    }
    standin = None
    try:
        # `molecule create` also runs prepare: make the scenario's network first and serve
        # the stand-in on its gateway, where the host reaches it.
        if podman("network", "exists", NETWORK, check=False).returncode != 0:
            podman("network", "create", NETWORK)
        gateway = json.loads(podman("network", "inspect", NETWORK).stdout)[0]["subnets"][0]["gateway"]
        standin = StandIn(host=gateway, api_key=TEST_API_KEY).start()
        env |= {"STANDIN_URL": standin.url, "STANDIN_API_KEY": TEST_API_KEY}
        molecule("create", SCENARIO, env)  # runs prepare too
        # `molecule check` would destroy and re-create the host: check mode on this one instead.
        molecule("converge", SCENARIO, env, "--", "--check")
        assert standin.sweeps == {}, "check mode created a sweep"
        molecule("converge", SCENARIO, env)
        molecule("idempotence", SCENARIO, env)
        assert len(standin.sweeps) == 1, "converge twice, one sweep"
        out = molecule("verify", SCENARIO, env)
        # A verify that collected nothing would pass: every role's file must have run.
        for name in ROLE_TESTS:
            assert re.search(rf"{name}::\S+ PASSED", out), f"{name} ran no test:\n{out[-5000:]}"
        assert re.search(r"\b(\d+) passed\b", out), out[-3000:]
    finally:
        molecule("destroy", SCENARIO, env)
        podman("network", "rm", "--force", NETWORK, check=False)
        if standin:
            standin.stop()
