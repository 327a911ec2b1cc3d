"""Test program: the preemptible example plus a worker that ignores SIGTERM.

The worker stands for a data-loader or CUDA helper process that holds GPU memory: it leaves
the run's process group (its own session) and ignores SIGTERM and SIGINT. On a normal end
the run stops its worker; when the run is preempted or killed the worker is left behind,
and only the agent unit's cgroup still holds it. The code's VERSION file becomes a run tag.
With LEAKY_FAIL_LR set, the run of that learning rate fails at once (exit 3), before
wandb.init(): W&B has no word from it (crashed). With LEAKY_FAIL_AFTER_INIT_LR, that run
fails after wandb.init(), with its exit code reported (failed).
"""

import os
import signal
import sys
import time
from pathlib import Path

import train


def worker() -> None:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        time.sleep(60)


def main() -> int:
    # A broken setup for one value (a missing driver, a bad path): the run fails at once.
    failing = os.environ.get("LEAKY_FAIL_LR")
    if failing and any(arg in (f"--lr={failing}", f"--lr={float(failing)}") for arg in sys.argv[1:]):
        print(f"leaky: lr {failing} cannot run here", file=sys.stderr)
        return 3
    failing = os.environ.get("LEAKY_FAIL_AFTER_INIT_LR")
    if failing and any(arg in (f"--lr={failing}", f"--lr={float(failing)}") for arg in sys.argv[1:]):
        import wandb

        run = wandb.init()
        print(f"leaky: lr {failing} diverged", file=sys.stderr)
        run.finish(exit_code=3)
        return 3
    version = (Path(__file__).parent / "VERSION").read_text().strip()
    os.environ["WANDB_TAGS"] = f"code-{version}"
    pid = os.fork()
    if pid == 0:
        worker()
    code = train.main()
    if code == 0:
        os.kill(pid, signal.SIGKILL)
    return code


if __name__ == "__main__":
    sys.exit(main())
