"""Updates of the code alone on one fleet, for pairing two versions on one machine state.

N hosts (BENCH_N, default 12): a cold deploy, the agents settled, warm runs as bench.py's, then
BENCH_UPDATES (default 3) updates of the code alone, each timed with its drains. Run it from
each version's checkout in turn (its own bench/bench.py and playbooks), alternating:

    python bench/updates.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench
from fleet import build_image


def main() -> int:
    size = int(os.environ.get("BENCH_N", "12"))
    updates = int(os.environ.get("BENCH_UPDATES", "3"))
    image = build_image(log=bench.say)
    with tempfile.TemporaryDirectory(prefix="sweep-fleet-updates-") as tmp:
        run = bench.Run(size, image, Path(tmp))
        try:
            bench.say(f"cold {run.play('deploy.yml'):.1f}")
            run.settle(size)
            warm = statistics.median(run.play("deploy.yml") for _ in range(bench.WARM_REPS))
            beyond = []
            for _ in range(updates):
                took, drains = run.update_code()
                beyond.append(took - drains)
                bench.say(f"update {took:.1f}, drains {drains:.1f}, beyond them {took - drains:.1f}")
            net = statistics.median(beyond)
            bench.say(f"warm {warm:.2f}, update beyond its drains {net:.2f} (median): {net / warm:.2f}x")
        finally:
            run.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
