"""wandb_code: the pushed code, owned by the service user, with its requirements installed."""

CODE = "/var/lib/sweep-fleet/code"


def test_code_is_pushed_and_owned_by_the_service_user(host):
    main = host.file(f"{CODE}/main.py")
    assert main.exists
    assert (main.user, main.group) == ("wandb", "wandb")
    assert not main.mode & 0o007, "not readable by others"
    code_dir = host.file(CODE)
    assert (code_dir.user, code_dir.mode) == ("wandb", 0o750)


def test_excluded_paths_are_not_pushed(host):
    names = host.run(f"sudo ls -A {CODE}").stdout.split()
    assert "datasets" not in names, "excluded by wandb_code_extra_excludes"
    assert ".git" not in names and "wandb" not in names


def test_extra_paths_are_pushed(host):
    shards = host.run(f"sudo ls {CODE}/data/shards").stdout.split()
    assert sorted(shards) == sorted(f"part{i}.csv" for i in range(1, 13))
    assert host.file(f"{CODE}/data/shards/part1.csv").user == "wandb"


def test_requirements_are_installed_in_the_venv(host):
    assert host.run("/opt/sweep-fleet/venv/bin/python -c 'import iniconfig'").rc == 0
    assert (
        host.check_output("/opt/sweep-fleet/venv/bin/python -c 'import wandb; print(wandb.__version__)'")
        == "0.31.0"
    )
