#!/usr/bin/python3
"""A stand-in for ``nvidia-smi -q -x`` on the test hosts, which have no GPU.

It prints the NVML XML report (nvidia-smi's nvsmi_device DTD: <nvidia_smi_log>, one <gpu
id="BUS ID"> each with <minor_number>, <uuid>, <pci><pci_bus_id>, <fb_memory_usage>,
<utilization><gpu_util> and <processes><process_info> with <pid>, <type> and
<used_memory>), in PCI bus order as nvidia-smi does, of the GPUs the tests describe:

* ``/etc/fake-nvidia/gpus.json`` (root's): {"gpus": [{"uuid", "bus_id", "minor",
  "memory_total", "util"}]}. Absent: nvidia-smi's own failure when there is no driver
  ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver", exit 9).
* ``/dev/shm/fake-nvidia/PID.json``: {"uuids": [...], "memory": MiB}, what process PID
  holds: what a CUDA context makes the driver report. The GPU jobs of the tests and the
  tests' "other user's process" write these; an entry whose process has ended is not
  reported (the driver forgets a process that exits). The driver sees every process, so
  this report lists them whoever asks; like the real one, it does not tell whose they are.

Only ``-q -x`` is answered; anything else fails as an unknown option does.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from xml.sax.saxutils import escape

CONFIG = "/etc/fake-nvidia/gpus.json"
HELD = "/dev/shm/fake-nvidia"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # another user's process (or one hidden from us)
    return True


def held() -> list[dict]:
    entries = []
    try:
        names = sorted(os.listdir(HELD))
    except OSError:
        return entries
    for name in names:
        pid = name.removesuffix(".json")
        if not pid.isdigit() or not alive(int(pid)):
            continue
        try:
            with open(os.path.join(HELD, name), encoding="utf-8") as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            continue
        entries.append(
            {"pid": int(pid), "uuids": entry.get("uuids") or [], "memory": int(entry.get("memory", 0))}
        )
    return entries


def report(gpus: list[dict], processes: list[dict]) -> str:
    out = [
        '<?xml version="1.0" ?>',
        '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">',
        "<nvidia_smi_log>",
    ]
    out += ["\t<driver_version>550.54.15</driver_version>", f"\t<attached_gpus>{len(gpus)}</attached_gpus>"]
    for gpu in sorted(gpus, key=lambda g: g["bus_id"].lower()):
        mine = [p for p in processes if gpu["uuid"] in p["uuids"]]
        used = sum(p["memory"] for p in mine)
        out += [
            f'\t<gpu id="{escape(gpu["bus_id"])}">',
            "\t\t<product_name>NVIDIA A100-SXM4-80GB</product_name>",
            f"\t\t<uuid>{escape(gpu['uuid'])}</uuid>",
            f"\t\t<minor_number>{int(gpu['minor'])}</minor_number>",
            f"\t\t<pci>\n\t\t\t<pci_bus_id>{escape(gpu['bus_id'])}</pci_bus_id>\n\t\t</pci>",
            "\t\t<fb_memory_usage>",
            f"\t\t\t<total>{int(gpu['memory_total'])} MiB</total>",
            f"\t\t\t<used>{used} MiB</used>",
            f"\t\t\t<free>{int(gpu['memory_total']) - used} MiB</free>",
            "\t\t</fb_memory_usage>",
            f"\t\t<utilization>\n\t\t\t<gpu_util>{int(gpu.get('util', 0)) if mine else 0} %</gpu_util>\n"
            "\t\t</utilization>",
            "\t\t<processes>",
        ]
        for proc in mine:
            out += [
                "\t\t\t<process_info>",
                f"\t\t\t\t<pid>{proc['pid']}</pid>",
                "\t\t\t\t<type>C</type>",
                "\t\t\t\t<process_name>python</process_name>",
                f"\t\t\t\t<used_memory>{proc['memory']} MiB</used_memory>",
                "\t\t\t</process_info>",
            ]
        out += ["\t\t</processes>", "\t</gpu>"]
    out.append("</nvidia_smi_log>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if argv != ["-q", "-x"]:
        print(f"Invalid combination of input arguments. Please run 'nvidia-smi -h' for help. ({argv})")
        return 2
    try:
        with open(CONFIG, encoding="utf-8") as handle:
            gpus = json.load(handle)["gpus"]
    except (OSError, ValueError, KeyError):
        print(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
            "that the latest NVIDIA driver is installed and running."
        )
        return 9
    sys.stdout.write(report(gpus, held()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
