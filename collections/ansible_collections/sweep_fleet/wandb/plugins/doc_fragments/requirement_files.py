# Copyright: sweep-fleet developers
# Apache License 2.0
"""The venv module's requirements files given by their content, which the runtime module
installs the local code's with."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  requirement_files:
    description:
      - Requirements files given by their content, each written by its base name into the
        module's private directory and installed as a file on the host is, refused as that
        would be.
      - The runtime action fills it in with the controller's copy of the local code's file,
        read from O(sweep_fleet.wandb.runtime#module:code_requirements).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Where the file is (named in the output and in the installed C(requirements)).
        type: str
        required: true
      content:
        description: Its text.
        type: str
        required: true
"""
