"""Test program: the preemptible example's train.py on a node that may be broken.

With NODE_BROKEN set (a host variable in the tests), every run fails at once, before
wandb.init(), as on a host whose GPU or driver is gone.
"""

import os
import sys

import train

if __name__ == "__main__":
    if os.environ.get("NODE_BROKEN"):
        sys.exit("CUDA error: no CUDA-capable device is detected")
    sys.exit(train.main())
