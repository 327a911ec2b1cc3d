"""Fixtures: the test-host image, fleets of hosts, and the W&B API stand-in."""

from __future__ import annotations

import os
import uuid

import pytest

from fleet import Fleet, build_image
from standin import StandIn
from support import TEST_API_KEY

# The longest test files first, so that two workers taking whole files (make test) end
# together: each file's tests share one fleet. Files not named here come after, in order.
LONGEST_FIRST = [
    "test_lifecycle.py",
    "test_deploy.py",
    "test_trust.py",
    "test_molecule.py",
    "test_code_modes.py",
    "test_collection.py",
    "test_proof.py",
]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept


@pytest.fixture(autouse=True)
def standin_refusals():
    """Fail the test during which a W&B stand-in got a query outside W&B's schema, or failed.

    An unknown operation, field or argument is what W&B refuses and our clients must never
    send; an internal error is a fault of the stand-in. The service's own refusals (a sweep
    that is not running, not found, a forbidden state change) are W&B's answers, which the
    clients must handle. A test that causes one on purpose takes it with take_errors().
    """
    yield
    refused = [f"{s.url}: {e}" for s in list(StandIn.made) for e in s.take_errors() if e["kind"] != "service"]
    assert refused == [], "the W&B stand-in refused queries:\n" + "\n".join(refused)


@pytest.fixture(scope="session")
def host_image() -> str:
    """The test-host image, built once per recipe and then reused."""
    return build_image(log=lambda msg: print(msg, flush=True))


@pytest.fixture(scope="session")
def make_fleet(host_image, tmp_path_factory):
    """Factory: ``make_fleet(n)`` brings up n fresh hosts (``offline=True``: on a network
    with no way out); all are removed at the end."""
    fleets: list[Fleet] = []

    def make(count: int, name: str | None = None, offline: bool = False) -> Fleet:
        name = name or f"t{uuid.uuid4().hex[:6]}"
        fleet = Fleet(name, tmp_path_factory.mktemp(f"fleet-{name}"), offline=offline)
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
