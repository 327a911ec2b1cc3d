"""Score one data shard: the same script runs on every shard of the sweep."""

import argparse
import csv
import os
import time

import wandb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    run = wandb.init(config=vars(args))
    with open(args.data_path, newline="") as handle:
        scores = [float(row["score"]) for row in csv.DictReader(handle)]
    for step, score in enumerate(scores):
        run.log({"score": score}, step=step)
    mean = sum(scores) / len(scores)
    run.summary["mean_score"] = mean
    run.summary["host"] = os.uname().nodename
    # Stands in for real work; tests keep it short.
    time.sleep(float(os.environ.get("SHARD_SECONDS", "1")))
    run.finish()
    # In the agent's log (the journal of its unit): which shard was scored, once it was saved.
    print(f"scored {args.data_path}: mean_score {mean:.4f}", flush=True)


if __name__ == "__main__":
    main()
