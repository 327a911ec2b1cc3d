"""wandb_credentials: the key only in a root-only netrc; address and proxies in a root-only file."""

KEY = "molecule-" + "k3y" * 14


def test_netrc_is_root_only_and_holds_the_key(host):
    directory = host.file("/etc/sweep-fleet")
    assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o700)
    netrc = host.file("/etc/sweep-fleet/netrc")
    assert (netrc.user, netrc.group, netrc.mode) == ("root", "root", 0o600)
    content = host.run("sudo cat /etc/sweep-fleet/netrc").stdout
    assert "machine wandb.example.com:8080" in content
    assert f"password {KEY}" in content


def test_environment_file(host):
    env = host.file("/etc/sweep-fleet/wandb.env")
    assert (env.user, env.mode) == ("root", 0o600)
    lines = set(host.run("sudo cat /etc/sweep-fleet/wandb.env").stdout.splitlines())
    assert {
        "WANDB_BASE_URL=https://wandb.example.com:8080",
        "HTTPS_PROXY=http://proxy.example.com:3128",
        "https_proxy=http://proxy.example.com:3128",
        "NO_PROXY=localhost,127.0.0.1",
    } <= lines
    assert not any(line.startswith("HTTP_PROXY=") for line in lines), "unset proxies are left out"


def test_key_is_nowhere_else(host):
    # The key is read from the netrc on the host, so that no command line carries it.
    holders = host.run(
        'sudo sh -c \'sed -n "s/^ *password //p" /etc/sweep-fleet/netrc > /run/key-pattern; '
        "grep -rlF -f /run/key-pattern /etc /opt /var /home /root /tmp 2>/dev/null; rm -f /run/key-pattern'"
    ).stdout.split()
    assert holders == ["/etc/sweep-fleet/netrc"]
