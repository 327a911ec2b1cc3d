"""GPUs for test hosts, which have none: the tests' stand-in ``nvidia-smi``
(tests/programs/nvidia_smi.py) and the device nodes a driver would make.

``install(fleet, host)`` puts the stand-in at /usr/local/bin/nvidia-smi and makes the
directory where processes note the GPU memory they hold; ``set_gpus(fleet, host, gpus)``
describes the host's GPUs ({"uuid", "bus_id", "minor", "memory_total", "util"}) and makes
their nodes with mknod (character devices 195:N, as the NVIDIA driver's; where the
container allows it); ``no_gpus`` takes them away (nvidia-smi then fails as without a driver).
"""

from __future__ import annotations

import json
from pathlib import Path

from .fleet import Fleet, Host

STAND_IN = Path(__file__).resolve().parents[1] / "programs" / "nvidia_smi.py"


def install(fleet: Fleet, host: Host) -> None:
    fleet.ssh(host, "sudo install -m 0755 /dev/stdin /usr/local/bin/nvidia-smi", input=STAND_IN.read_text())
    fleet.ssh(
        host, "sudo install -d -m 0755 /etc/fake-nvidia && sudo install -d -m 1777 /dev/shm/fake-nvidia"
    )


def set_gpus(fleet: Fleet, host: Host, gpus: list[dict]) -> None:
    fleet.ssh(host, "sudo tee /etc/fake-nvidia/gpus.json >/dev/null", input=json.dumps({"gpus": gpus}))
    nodes = " && ".join(
        [f"mknod -m 666 /dev/nvidia{g['minor']} c 195 {g['minor']}" for g in gpus]
        + ["mknod -m 666 /dev/nvidiactl c 195 255", "mknod -m 666 /dev/nvidia-uvm c 235 0"]
    )
    fleet.ssh(host, f"sudo sh -c 'rm -f /dev/nvidia*; {nodes}' || true")


def no_gpus(fleet: Fleet, host: Host) -> None:
    fleet.ssh(host, "sudo rm -f /etc/fake-nvidia/gpus.json /dev/nvidia*")


def four(prefix: str = "0e1f2a3") -> list[dict]:
    """Four 80 GiB GPUs whose bus order is their minor order."""
    buses = ["17", "31", "B1", "CA"]
    return [
        {
            "uuid": f"GPU-{n}{prefix}-4b5c-6d7e-8f90-a1b2c3d4e5f{n}",
            "bus_id": f"00000000:{bus}:00.0",
            "minor": n,
            "memory_total": 81920,
            "util": 90,
        }
        for n, bus in enumerate(buses)
    ]
