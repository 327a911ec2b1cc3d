"""Run the W&B API stand-in in the foreground.

python -m standin --host 10.89.0.1 --port 8080 [--api-key KEY] [--url-file PATH]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .server import StandIn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m standin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--api-key", help="accept only this API key (default: any)")
    parser.add_argument("--api-key-file", type=Path, help="accept only the API key in this file")
    parser.add_argument("--url-file", type=Path, help="write the base URL here once listening")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )

    key = args.api_key_file.read_text().strip() if args.api_key_file else args.api_key
    standin = StandIn(args.host, args.port, api_key=key).start()
    print(f"W&B API stand-in listening on {standin.url}", flush=True)
    if args.url_file:
        args.url_file.write_text(standin.url + "\n")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
