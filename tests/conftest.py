"""Fixtures: the test-host image, fleets of hosts, and the W&B API stand-in."""

from __future__ import annotations

import os
import uuid

import pytest

from fleet import Fleet, build_image
from fleet.slurm import CLUSTER_UID
from standin import StandIn
from support import TEST_API_KEY

# The longest test files first, so that two workers taking whole files (make test) end
# together: each file's tests share one fleet. Files not named here come after, in order.
# Ordered by each file's seconds in a whole run (--durations=0, 2026-12-04, 2 cores): a
# worker takes the next file when it is nearly done with its own, so with these times this
# order ends the workers about together (2532 s each, where the order before gave 2413 and
# 2652 s, as that run measured).
LONGEST_FIRST = [
    "test_faults.py",  # 1383 s
    "test_lifecycle.py",  # 902
    "test_deploy.py",  # 510
    "test_trust.py",  # 447
    "test_slurm.py",  # 360
    "test_windows_path.py",  # 277
    "test_gpus.py",  # 200
    "test_wheelhouse.py",  # 195
    "test_molecule.py",  # 175
    "test_attacks.py",  # 169
    "test_standin.py",  # 89
    "test_sweep_module.py",  # 83
    "test_collection.py",  # 75
    "test_proof.py",  # 65
    "test_code_modes.py",  # 60
    "test_agent_launcher.py",  # 29
]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept


# The one refusal of the service that is part of every sweep's normal life: an agent that
# starts as its sweep ends is told "Sweep ... is not running" (HTTP 400), and exits.
NORMAL_REFUSALS = (("CreateAgent", "is not running"),)


@pytest.fixture(autouse=True)
def standin_refusals(request):
    """Fail the test during which a W&B stand-in refused something it did not expect.

    A query outside W&B's schema is what W&B refuses and our clients must never send; an
    internal error is a fault of the stand-in. A refusal of the service itself (not found,
    a forbidden state change, no permission) is W&B's answer, which a client must handle,
    but one no test expected is a fault too. A test that causes refusals on purpose takes
    them with take_errors(), or names them with @pytest.mark.standin_refusals("text", ...).
    Every stand-in made is checked, one made and dropped inside the test body too.
    """
    yield
    expected = [text for mark in request.node.iter_markers("standin_refusals") for text in mark.args]
    refused = []
    for server in list(StandIn.made):
        for error in server.take_errors():
            message = " ".join(error["messages"])
            if error["kind"] == "service" and (
                any(op == error["operation"] and text in message for op, text in NORMAL_REFUSALS)
                or any(text in message for text in expected)
            ):
                continue
            refused.append(f"{server.url}: {error}")
        if server.closed:
            StandIn.made.remove(server)
    assert refused == [], "the W&B stand-in refused queries:\n" + "\n".join(refused)


@pytest.fixture(scope="session")
def host_image() -> str:
    """The test-host image, built once per recipe and then reused."""
    return build_image(log=lambda msg: print(msg, flush=True))


@pytest.fixture(scope="session")
def make_fleet(host_image, tmp_path_factory):
    """Factory: ``make_fleet(n)`` brings up n fresh hosts (``offline=True``: on a network
    with no way out; ``shared=True``: a directory they all see at /shared); all are removed
    at the end."""
    fleets: list[Fleet] = []

    def make(count: int, name: str | None = None, offline: bool = False, shared: bool = False) -> Fleet:
        name = name or f"t{uuid.uuid4().hex[:6]}"
        state = tmp_path_factory.mktemp(f"fleet-{name}")
        if shared:  # a directory all hosts see at /shared, writable by the cluster's user
            (state / "shared").mkdir(mode=0o755)
            os.chown(state / "shared", CLUSTER_UID, CLUSTER_UID)
        fleet = Fleet(name, state, offline=offline, shared=state / "shared" if shared else None)
        fleets.append(fleet)
        fleet.up(count, image=host_image)
        return fleet

    yield make
    if os.environ.get("FLEET_KEEP") != "1":
        for fleet in fleets:
            fleet.down()


@pytest.fixture
def standin_for():
    """Factory: ``standin_for(fleet)`` serves a stand-in where that fleet's hosts reach it."""
    started: list[StandIn] = []

    def start(fleet: Fleet, api_key: str | None = TEST_API_KEY) -> StandIn:
        server = StandIn(host=fleet.gateway(), api_key=api_key).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
