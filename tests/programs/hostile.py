"""Test program: a run whose code attacks what is around it (tests/e2e/test_attacks.py).

Run by the real wandb agent as a sweep's program, with ``--attack`` one of:

* ``hold``: a benign run that waits for ATTACK_DIR/release (the victim next door).
* ``neighbour``: waits for ATTACK_DIR/targets.json (the other agent's launcher pid, its
  wandb agent's pid and its working directory, written by the test as root), then tries
  to kill that agent, read its environment, replace the links to the code in its
  directory and in its own, and write into its cache.
* ``fifo``, ``zero``, ``bomb``: replaces the config file the agent wrote for this run
  (WANDB_SWEEP_PARAM_PATH, which root reads for status.yml and stop.yml) with a FIFO, a
  link to /dev/zero or a YAML alias bomb, then holds.
* ``metadata``: connects to the cloud's instance metadata address (169.254.169.254:80).

Each attack prints one line ``ATTACK {json}``: for each try, "done" or "refused: ERRNO".
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import wandb

ATTACK_DIR = Path(os.environ.get("ATTACK_DIR", "/var/lib/sweep-fleet/attack"))
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(20)
)


def attempt(results: dict, name: str, action) -> None:
    try:
        action()
        results[name] = "done"
    except OSError as err:
        results[name] = f"refused: {errno.errorcode.get(err.errno, err.errno)}"


def wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.2)
    return False


def neighbour(results: dict) -> None:
    mine = Path(os.environ["WANDB_DIR"]).name
    if not wait_for(ATTACK_DIR / "targets.json", 300):
        results["targets"] = "never written"
        return
    targets = json.loads((ATTACK_DIR / "targets.json").read_text())
    other = next(t for instance, t in targets.items() if instance != mine)
    attempt(results, "signal its launcher", lambda: os.kill(other["launcher"], 0))
    attempt(results, "kill its agent", lambda: os.kill(other["agent"], signal.SIGKILL))
    attempt(results, "read its environment", lambda: Path(f"/proc/{other['agent']}/environ").read_bytes())
    work = Path(other["work"])

    def replace_its_code() -> None:
        (work / "main.py").unlink()
        (work / "main.py").write_text("print('owned')\n")

    attempt(results, "replace its code", replace_its_code)
    attempt(results, "write in its directory", lambda: (work / "planted").write_text("x"))
    attempt(results, "write in its cache", lambda: Path(other["cache"], "planted").write_text("x"))

    def replace_own_code() -> None:
        Path("evil.py").write_text("print('owned')\n")
        os.replace("evil.py", "main.py")  # main.py: root's link in a sticky directory

    attempt(results, "replace the code link in its own directory", replace_own_code)
    attempt(results, "remove the code link in its own directory", lambda: os.unlink("main.py"))


def replace_config(kind: str, results: dict) -> None:
    path = os.environ["WANDB_SWEEP_PARAM_PATH"]

    def replace() -> None:
        os.unlink(path)
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "zero":
            os.symlink("/dev/zero", path)
        else:
            Path(path).write_text(BOMB + "lr:\n  value: *u\n")

    attempt(results, f"replace the agent's config file with a {kind}", replace)


def metadata(results: dict) -> None:
    def connect() -> None:
        with socket.create_connection(("169.254.169.254", 80), timeout=20) as sock:
            sock.sendall(b"GET /latest/meta-data/ HTTP/1.0\r\n\r\n")
            results["answer"] = sock.recv(100).decode(errors="replace")

    try:
        connect()
        results["connect"] = "done"
    except TimeoutError:
        results["connect"] = "refused: timeout"
    except OSError as err:
        results["connect"] = f"refused: {errno.errorcode.get(err.errno, err.errno)}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attack", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = wandb.init(config=vars(args))
    results: dict = {}
    if args.attack == "neighbour":
        neighbour(results)
    elif args.attack in ("fifo", "zero", "bomb"):
        replace_config(args.attack, results)
    elif args.attack == "metadata":
        metadata(results)
    if results:
        print("ATTACK " + json.dumps({"attack": args.attack, "results": results}, sort_keys=True), flush=True)
    if args.attack not in ("neighbour", "metadata"):
        wait_for(ATTACK_DIR / "release", 600)
    run.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
