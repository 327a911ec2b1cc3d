# Copyright: sweep-fleet developers
# Apache License 2.0
"""The code's requirement files to look for, in order:
``wandb_code_requirements | sweep_fleet.wandb.requirement_candidates``. The wandb_code role
installs the first that exists; the preflight and the desired state's digest read the same
files on the controller."""

from __future__ import annotations

from ansible_collections.sweep_fleet.wandb.plugins.module_utils.requirements import candidates


class FilterModule:
    def filters(self):
        return {"requirement_candidates": candidates}
