# Copyright: sweep-fleet developers
# Apache License 2.0
"""One module's work as a step of another module's call.

A role module (see plugins/modules/runtime.py) converges what several modules of this
collection would, in one call to the host: each step's arguments are checked against that
module's own argument spec (defaults, types, no_log values kept out of the output) and its
code runs with them, in order. A step that fails fails the call, with that module's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


class _Step:
    """The call's module, with the step's parameters."""

    def __init__(self, module: Any, params: dict):
        self._module = module
        self.params = params

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def run_step(
    module: Any,
    name: str,
    spec: dict,
    args: dict,
    run: Callable[[Any], dict],
    mutually_exclusive: list | None = None,
    public: frozenset = frozenset(),
) -> dict:
    checked = ArgumentSpecValidator(spec, mutually_exclusive=mutually_exclusive).validate(dict(args))
    # The step's own no_log values, but those the calling module passes in as not secret (a
    # role module takes its secrets as no_log options of its own).
    module.no_log_values.update(set(checked._no_log_values) - public)
    if checked.error_messages:
        module.fail_json(msg=f"{name}: " + "; ".join(checked.error_messages))
    return run(_Step(module, checked.validated_parameters))
