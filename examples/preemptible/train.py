"""A training script that a sweep agent can stop without losing the run.

When the agent's host is stopped (playbooks/stop.yml in preempt mode, a drain that ran out of
time, `systemctl stop`, a reboot), the run receives SIGTERM and has the agents' term timeout
(wandb_agent_term_timeout) to react. This script then:

1. finishes the step it is in (never stop in the middle of an optimizer step),
2. saves a checkpoint,
3. calls run.mark_preempting(), so that W&B marks the run preempted, not crashed,
4. exits with a non-zero status: W&B then hands the same run (same id and parameters) to
   another agent, which resumes from the checkpoint when it can read it (point
   --checkpoint_dir at storage the hosts share).

A run that finishes normally exits 0 and is never requeued.
"""

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

PREEMPTED_EXIT = 143  # what a process killed by SIGTERM would report

stop_requested = False


def request_stop(signum, frame) -> None:
    """Only note the request: the training loop decides where it is safe to stop."""
    global stop_requested
    stop_requested = True


# Before importing wandb, which takes seconds: a stop that comes while the run starts is noted
# too (the run then saves its epoch 0 and is handed back), rather than killing it unrecorded.
signal.signal(signal.SIGTERM, request_stop)

import wandb  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch_seconds", type=float, default=1.0)
    parser.add_argument(
        "--checkpoint_dir",
        default=os.path.join(os.environ.get("WANDB_DIR", "."), "checkpoints"),
        help="where checkpoints go; shared storage lets another host resume a preempted run",
    )
    args = parser.parse_args()

    # resume="allow": a requeued run keeps its id, and continues where it was stopped.
    run = wandb.init(config=vars(args), resume="allow")
    checkpoint = Path(args.checkpoint_dir) / f"{run.id}.json"
    random.seed(args.seed)
    state = {"epoch": 0, "loss": 1.0 + random.random() / 100}
    if checkpoint.exists():
        state = json.loads(checkpoint.read_text())
        print(f"resuming run {run.id} from epoch {state['epoch']}", flush=True)

    while state["epoch"] < args.epochs and not stop_requested:
        time.sleep(args.epoch_seconds)  # one epoch of training
        state = {"epoch": state["epoch"] + 1, "loss": state["loss"] * (1 - args.lr)}
        run.log({"epoch": state["epoch"], "loss": state["loss"]})

    if stop_requested and state["epoch"] < args.epochs:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text(json.dumps(state))
        print(f"preempted at epoch {state['epoch']}: checkpoint saved to {checkpoint}", flush=True)
        run.mark_preempting()
        run.finish(exit_code=PREEMPTED_EXIT)
        return PREEMPTED_EXIT

    run.summary["final_loss"] = state["loss"]
    run.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
