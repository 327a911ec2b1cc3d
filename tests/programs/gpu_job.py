"""A sweep program for the GPU tests: it "computes" on the GPUs the agent pinned it to.

It tells the stand-in driver (tests/programs/nvidia_smi.py) that it holds memory on each
GPU of its CUDA_VISIBLE_DEVICES, as a CUDA context would make the real driver report, then
works for JOB_SECONDS and lets go. Its output names the GPUs it saw.
"""

import json
import os
import time

import wandb

HELD = "/dev/shm/fake-nvidia"

run = wandb.init()
gpus = [u for u in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if u]
held = os.path.join(HELD, f"{os.getpid()}.json")
with open(held, "w", encoding="utf-8") as handle:
    json.dump({"uuids": gpus, "memory": 2048}, handle)
try:
    print(
        f"job x={run.config['x']} on {','.join(gpus) or 'cpu'} "
        f"order={os.environ.get('CUDA_DEVICE_ORDER', '-')}",
        flush=True,
    )
    time.sleep(float(os.environ.get("JOB_SECONDS", "2")))
    run.summary["gpus"] = len(gpus)
finally:
    os.unlink(held)
run.finish()
