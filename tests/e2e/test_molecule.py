"""Each role's molecule scenario: check mode -> converge -> idempotence -> testinfra verify.

Steps run one by one so that the W&B API stand-in can be started where the
scenario's host reaches it (its network exists only after `molecule create`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from fleet.fleet import podman, podman_env
from standin import StandIn
from support import REPO, TEST_API_KEY, VENV_BIN

pytestmark = pytest.mark.fleet

SCENARIOS = ["wandb_runtime", "wandb_credentials", "wandb_code", "wandb_sweep", "wandb_agent"]
NEEDS_STANDIN = {"wandb_sweep", "wandb_agent"}


def molecule(step: str, scenario: str, env: dict, *extra: str) -> None:
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
        if step in ("converge", "idempotence", "verify") and scenario == "wandb_agent":
            journal = podman(
                "exec",
                f"molecule-{scenario.removeprefix('wandb_')}",
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


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario, host_image):
    env = podman_env() | {
        "SWEEP_FLEET_IMAGE": host_image,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
    }
    network = f"molecule-{scenario.removeprefix('wandb_')}"
    (REPO / ".cache" / "uv-hosts").mkdir(parents=True, exist_ok=True)
    standin = None
    try:
        if scenario in NEEDS_STANDIN:
            # `molecule create` also runs prepare, which needs the stand-in already: make the
            # scenario's network first and serve the stand-in on its gateway.
            if podman("network", "exists", network, check=False).returncode != 0:
                podman("network", "create", network)
            gateway = json.loads(podman("network", "inspect", network).stdout)[0]["subnets"][0]["gateway"]
            standin = StandIn(host=gateway, api_key=TEST_API_KEY).start()
            env |= {"STANDIN_URL": standin.url, "STANDIN_API_KEY": TEST_API_KEY}
        molecule("create", scenario, env)  # runs prepare too
        # `molecule check` would destroy and re-create the host: check mode on this one instead.
        molecule("converge", scenario, env, "--", "--check")
        if standin:
            assert standin.sweeps == {}, "check mode created a sweep"
        molecule("converge", scenario, env)
        molecule("idempotence", scenario, env)
        if standin:
            assert len(standin.sweeps) == 1, "converge twice, one sweep"
        molecule("verify", scenario, env)
    finally:
        molecule("destroy", scenario, env)
        podman("network", "rm", "--force", network, check=False)
        if standin:
            standin.stop()
