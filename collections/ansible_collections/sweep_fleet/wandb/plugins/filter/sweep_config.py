# Copyright: sweep-fleet developers
# Apache License 2.0
"""Filters for sweep configs: ``config | sweep_fleet.wandb.sweep_config_problems``."""

from __future__ import annotations

from ansible_collections.sweep_fleet.wandb.plugins.module_utils.sweep_config import sweep_config_problems
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.wandb_api import app_url, split_sweep_ref


def sweep_ref_problems(ref) -> list[str]:
    try:
        split_sweep_ref(str(ref))
    except ValueError as err:
        return [str(err)]
    return []


class FilterModule:
    def filters(self):
        return {
            "sweep_config_problems": sweep_config_problems,
            "sweep_ref_problems": sweep_ref_problems,
            "wandb_app_url": app_url,
        }
