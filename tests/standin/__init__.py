"""A W&B API stand-in for tests: answers what the real wandb CLI, agent and SDK send.

It is a test double. Nothing outside ``tests/`` points at it.
"""

from .server import Assignment, ServiceError, StandIn, SweepConfigError

__all__ = ["Assignment", "ServiceError", "StandIn", "SweepConfigError"]
