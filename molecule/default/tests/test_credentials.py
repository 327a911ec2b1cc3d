"""wandb_credentials: the key only in a root-only netrc; address and proxies in a root-only file."""

import os

KEY = os.environ["STANDIN_API_KEY"]


def test_netrc_is_root_only_and_holds_the_trimmed_key(host):
    directory = host.file("/etc/sweep-fleet")
    assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o700)
    netrc = host.file("/etc/sweep-fleet/netrc")
    assert (netrc.user, netrc.group, netrc.mode) == ("root", "root", 0o600)
    lines = host.run("sudo cat /etc/sweep-fleet/netrc").stdout.splitlines()
    # The key was given with a line break after it, as `echo KEY | ansible-vault encrypt_string` does.
    assert lines[-1] == f"  password {KEY}", "the key, trimmed, ends the file"
    assert any(line.startswith("machine ") and ":" in line for line in lines), "host:port of the stand-in"


def test_environment_file(host):
    env = host.file("/etc/sweep-fleet/wandb.env")
    assert (env.user, env.mode) == ("root", 0o600)
    lines = set(host.run("sudo cat /etc/sweep-fleet/wandb.env").stdout.splitlines())
    # Each value double-quoted, as systemd's EnvironmentFile= reads a value whole.
    assert {
        f'WANDB_BASE_URL="{os.environ["STANDIN_URL"]}"',
        'HTTPS_PROXY="http://proxy.example.com:3128"',
        'https_proxy="http://proxy.example.com:3128"',
        'NO_PROXY="localhost,127.0.0.1"',
    } <= lines
    assert not any(line.startswith("HTTP_PROXY=") for line in lines), "unset proxies are left out"


def test_key_is_nowhere_else(host):
    # The key is read from the netrc on the host, so that no command line carries it.
    holders = host.run(
        'sudo sh -c \'sed -n "s/^ *password //p" /etc/sweep-fleet/netrc > /run/key-pattern; '
        "grep -rlF -f /run/key-pattern /etc /opt /var /home /root /tmp 2>/dev/null; rm -f /run/key-pattern'"
    ).stdout.split()
    assert holders == ["/etc/sweep-fleet/netrc"]
