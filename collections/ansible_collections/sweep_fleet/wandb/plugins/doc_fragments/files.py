# Copyright: sweep-fleet developers
# Apache License 2.0
"""The options of the files module, shared by the role modules that write files too."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  directories:
    description: Directories to make.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory. Give O(directories[].path) or O(directories[].paths).
        type: path
      paths:
        description: Several directories with the same owner, group and mode.
        type: list
        elements: path
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Mode, as an octal string such as V("0750").
        type: raw
        default: "0755"
      each:
        description:
          - One directory per item of this list, with C({item}) in O(directories[].path),
            O(directories[].owner) and O(directories[].group) replaced by the item (the
            action plugin expands it).
        type: list
        elements: raw
  files:
    description: Files to write.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file. With O(files[].each), C({item}) in it is replaced by the item.
        type: path
        required: true
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Mode, as an octal string such as V("0640").
        type: raw
        default: "0644"
      template:
        description: A template of the role, rendered on the controller.
        type: str
      src:
        description: A file of the role, read on the controller.
        type: str
      content:
        description: The content itself.
        type: str
        default: ""
      secret:
        description: Keep the content out of every output, C(--diff) included.
        type: bool
        default: false
      each:
        description: Write the file once per item of this list, with C(item) set in the template.
        type: list
        elements: raw
      vars:
        description: Further variables for the template.
        type: dict
        default: {}
  private_files:
    description: Filled by the action plugin with the files marked secret; not for direct use.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file.
        type: path
        required: true
      owner:
        description: Owner.
        type: str
        default: root
      group:
        description: Group.
        type: str
        default: root
      mode:
        description: Mode.
        type: raw
        default: "0600"
      content:
        description: The content.
        type: str
        default: ""
"""
