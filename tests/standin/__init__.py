"""A W&B API stand-in for tests: answers what the real wandb CLI, agent and SDK send.

It is a test double. Nothing outside ``tests/`` points at it.
"""

from .server import Assignment, StandIn, SweepConfigError

__all__ = ["Assignment", "StandIn", "SweepConfigError"]
