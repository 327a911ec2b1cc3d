# Copyright: sweep-fleet developers
# Apache License 2.0
"""A value for a line of an environment file: ``value | sweep_fleet.wandb.env_file_value``.

systemd's EnvironmentFile= (and the agent launcher on Windows, which reads the same files)
takes a double-quoted value whole, with \\" and \\\\ for a quote and a backslash and no
expansion of $: any text without control characters round-trips. Control characters (a
newline would start a line of its own) are refused; the preflight refuses them first.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def env_file_value(value) -> str:
    text = str(value)
    bad = sorted({f"{ord(c):#04x}" for c in text if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise AnsibleFilterError(
            f"an environment file value cannot hold control characters ({', '.join(bad)})"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FilterModule:
    def filters(self):
        return {"env_file_value": env_file_value}
