"""Command line for the local test fleet.

python -m fleet image                       build the host image (cached by recipe)
python -m fleet up --name demo --hosts 3 --inventory PATH
python -m fleet list --name demo
python -m fleet down --name demo
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .fleet import Fleet, FleetError, build_image

DEFAULT_STATE = Path(".cache/fleet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fleet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    img = sub.add_parser("image", help="build the test-host image unless it is cached")
    img.add_argument("--force", action="store_true", help="rebuild even if cached")
    for name in ("up", "list", "down"):
        p = sub.add_parser(name)
        p.add_argument("--name", default="demo", help="fleet name (default: demo)")
        p.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="where the SSH key and known_hosts live (default: .cache/fleet/NAME)",
        )
        if name == "up":
            p.add_argument("--hosts", type=int, default=3, help="number of hosts (default: 3)")
            p.add_argument("--inventory", type=Path, help="write an INI inventory here")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "image":
            print(build_image(force=args.force))
            return 0
        fleet = Fleet(args.name, args.state_dir or DEFAULT_STATE / args.name)
        if args.cmd == "up":
            if args.hosts < 1:
                parser.error("--hosts must be at least 1")
            started = time.monotonic()
            hosts = fleet.up(args.hosts)
            print(f"fleet {fleet.name}: {len(hosts)} hosts ready in {time.monotonic() - started:.1f}s")
            for host in hosts:
                print(f"  {host.name} {host.ip}")
            if args.inventory:
                print(f"inventory: {fleet.write_inventory(args.inventory, hosts)}")
        elif args.cmd == "list":
            for host in fleet.hosts():
                print(f"{host.name} {host.ip}")
        elif args.cmd == "down":
            fleet.down()
            print(f"fleet {fleet.name}: removed")
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
