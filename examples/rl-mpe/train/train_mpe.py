"""A stand-in for an MPE training script: takes the sweep's arguments, logs rewards."""

import argparse
import os
import time

import tomli  # a requirement from pyproject.toml, to show it was installed
import wandb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recurrent_policy", action="store_true")
    parser.add_argument("--env_name", default="MPE")
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--ppo_epoch", type=int, required=True)
    args = parser.parse_args()
    assert tomli.loads("a = 1") == {"a": 1}

    run = wandb.init(config=vars(args))
    reward = 0.0
    for epoch in range(args.ppo_epoch):
        reward += args.lr * 100 / (epoch + 1)
        run.log({"average_episode_rewards": reward}, step=epoch)
    run.summary["recurrent_policy"] = args.recurrent_policy
    time.sleep(float(os.environ.get("EPISODE_SECONDS", "0.5")))
    run.finish()


if __name__ == "__main__":
    main()
