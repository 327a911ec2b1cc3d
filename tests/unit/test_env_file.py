"""Environment files: what the env_file_value filter writes is what systemd and the launcher read."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.sweep_fleet.wandb.plugins.filter.env_file import env_file_value
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import env_file_values

# Values a user may really give (a Windows path, a proxy password with quotes and $), each
# read back by systemd 252 on a test host as written here (tests/e2e/test_trust.py checks
# them in a run's environment).
TRICKY = {
    "A": "a b",
    "B": 'q"uote',
    "C": "back\\slash",
    "D": "dollar $HOME x",
    "E": "single ' quote",
    "F": "hash # x",
    "G": "trail\\",
    "H": "sp  ",
    "I": "C:\\Program Files\\x",
    "J": "dq\\$x",
    "K": "=equals=",
}


def test_every_value_without_control_characters_round_trips():
    text = "# managed\n" + "".join(f"{name}={env_file_value(value)}\n" for name, value in TRICKY.items())
    assert env_file_values(text) == TRICKY


@pytest.mark.parametrize("value", ["two\nlines", "cr\r", "nul\0", "esc\x1b[0m", "tab\tx"])
def test_control_characters_are_refused(value):
    with pytest.raises(AnsibleFilterError, match="control characters"):
        env_file_value(value)
