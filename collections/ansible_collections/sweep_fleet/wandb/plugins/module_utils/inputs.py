# Copyright: sweep-fleet developers
# Apache License 2.0
"""The rules every input of sweep-fleet must follow, beyond its type and choices.

``problems(roles, values, controller)`` returns one message per problem, each naming the
variable, what is wrong with its value and how to fix it. Types and choices come from the
roles' ``meta/argument_specs.yml`` (checked by the ``preflight`` action before these rules);
these rules are the rest. A message never repeats a secret's value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator

from ansible_collections.sweep_fleet.wandb.plugins.module_utils.agent_host import parse_gpus
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.pypi_index import redacted
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.requirements import (
    candidates as requirement_candidates,
)
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.requirements import file_problems
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.sweep_config import sweep_config_problems
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.wandb_api import SWEEP_NAME_RE

MISSING = object()
NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # a user or group name, as useradd takes it
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
API_KEY = re.compile(r"^([A-Za-z0-9]+-)?[A-Za-z0-9_]{40,}$")
VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$")
UV_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
URL = re.compile(r"^https?://([^\s/?#@]+@)?[^\s/?#@]+(/\S*)?$")
# A path on a host, as unit and environment files can hold it: no space, %, quote, $,
# backslash or control character, which systemd would read otherwise.
HOST_PATH = re.compile(r"^/[A-Za-z0-9._/+@,:=~-]*$")
# A user name takes the agent's number too (wandb-64).
NAME_LIMIT = 29
BASE_URL = re.compile(r"^https?://[^\s/?#@]+/?$")
PROXY_URL = re.compile(r"^https?://([^\s/@]+@)?[^\s/@]+/?$")
GIT_URL = re.compile(r"^((https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:\S+|/\S+)$")
GPU = re.compile(r"^[A-Za-z0-9:-]+$")
SERIAL = re.compile(r"^([1-9][0-9]*|([1-9][0-9]?|100)%)$")
W_AND_B_NAME_CHARS = set("/\\#?%:")
# CPython versions uv (0.13) can install.
PYTHON_MINORS = range(8, 15)
# Paths that remove.yml would delete or that are not sweep-fleet's to own.
SYSTEM_DIRS = {
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib64",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/local/bin",
    "/usr/sbin",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/tmp",
}
# Environment the agent unit sets itself; an agent environment entry must not change it.
UNIT_ENVIRONMENT = ("NETRC", "HOME", "PATH", "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_API_KEY")


class Controller:
    """What the rules may ask of the controller; tests give a fake one."""

    def islink(self, path: str) -> bool:
        return os.path.islink(path)

    def read(self, path: str, limit: int = 4 * 1024 * 1024) -> str | None:
        try:
            with open(path, "rb") as handle:
                return handle.read(limit).decode("utf-8", errors="replace")
        except OSError:
            return None

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def executable(self, path: str) -> bool:
        return os.path.isfile(path) and os.access(path, os.X_OK)

    def which(self, command: str) -> bool:
        return any(
            self.executable(os.path.join(d, command))
            for d in os.environ.get("PATH", "").split(os.pathsep)
            if d
        )


class Values:
    def __init__(self, values: dict, controller: Controller):
        self._values = values
        self.controller = controller

    def __getitem__(self, name: str):
        return self._values.get(name, MISSING)

    def has(self, *names: str) -> bool:
        return all(self._values.get(n, MISSING) is not MISSING for n in names)


def _inside(path: str, parent: str) -> bool:
    path, parent = os.path.normpath(path), os.path.normpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(values: Values, *names: str) -> Iterator[str]:
    for name in names:
        value = values[name]
        if value is MISSING or not isinstance(value, str):
            continue
        if value == "root":
            yield (
                f"{name} must not be root: the agents and every run would have root's rights; "
                "use an unprivileged name such as wandb"
            )
        elif not NAME.match(value) or len(value) > NAME_LIMIT:
            yield (
                f"{name} must be a user or group name such as wandb: lowercase letters, digits, "
                f"_ and -, at most {NAME_LIMIT} (each agent's account adds its number) (got {value!r})"
            )


def _paths(values: Values, *names: str, removable: bool = False) -> Iterator[str]:
    for name in names:
        value = values[name]
        if value is MISSING or not isinstance(value, str):
            continue
        if not os.path.isabs(value):
            yield f"{name} must be an absolute path such as /opt/sweep-fleet (got {value!r})"
        elif not HOST_PATH.match(value):
            yield (
                f"{name} must be a plain path of letters, digits and . _ - + / @ , : = ~ (got {value!r}): "
                "systemd's unit and environment files would read a space, %, quote, $, backslash or "
                "control character in it otherwise"
            )
        elif removable and os.path.normpath(value) in SYSTEM_DIRS:
            yield (
                f"{name} is {value}, a directory of the system: sweep-fleet owns this directory and "
                "playbooks/remove.yml deletes it; use one of its own, such as /opt/sweep-fleet"
            )


def _not_writable_by_runs(values: Values, state_name: str, *names: str) -> Iterator[str]:
    """Root reads, installs or runs what is in these paths: the directory where runs write
    must not hold them, nor lie inside them."""
    state = values[state_name]
    if not isinstance(state, str) or not os.path.isabs(state):
        return
    for name in names:
        value = values[name]
        if (
            isinstance(value, str)
            and os.path.isabs(value)
            and (_inside(value, state) or _inside(state, value))
        ):
            yield (
                f"{name} ({value}) and {state_name} ({state}) must not contain one another: the "
                "agents' runs write below the state directory, and root must never read, install or run "
                "what they could change; keep them apart, e.g. /opt/sweep-fleet and /var/lib/sweep-fleet"
            )


def _at_least(values: Values, name: str, least: float, what: str) -> Iterator[str]:
    value = values[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < least:
        yield f"{name} must be at least {least:g} {what} (got {value})"


def _requirements(values: Values, name: str, items) -> Iterator[str]:
    if not isinstance(items, list):
        return
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # pragma: no cover - ansible-core depends on packaging
        return
    for item in items:
        try:
            Requirement(str(item))
        except InvalidRequirement:
            yield f"{name} has {item!r}, which is not a requirement specifier such as torch==2.5.1"


def _environment(values: Values, name: str, forbidden: tuple[str, ...]) -> Iterator[str]:
    env = values[name]
    if not isinstance(env, dict):
        return
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_NAME.match(key):
            yield f"{name} has {key!r}, which is not an environment variable name (letters, digits and _)"
        elif key.upper() in forbidden:
            yield (
                f"{name}.{key} cannot be set here: sweep-fleet sets it itself"
                + (" (the key goes in wandb_credentials_api_key)" if key.upper() == "WANDB_API_KEY" else "")
            )
        elif isinstance(value, (dict, list)) or value is None:
            kind = type(value).__name__
            yield f"{name}.{key} must be a plain value such as a string or a number (got {kind})"
        elif re.search(r"[\x00-\x1f\x7f]", str(value)):
            yield (
                f"{name}.{key} has a control character (a line break, a tab, ...): an environment "
                "file would read it as more than one value; give it on one line"
            )


def _w_and_b_name(name: str, value: str, what: str) -> Iterator[str]:
    bad = sorted(W_AND_B_NAME_CHARS.intersection(value)) + (["a space"] if re.search(r"\s", value) else [])
    if len(value) > 128:
        yield f"{name} is {len(value)} characters long: W&B takes {what} names of at most 128"
    if bad:
        yield f"{name} {value!r} has {', '.join(bad)}, which W&B refuses in {what} names"


# -- wandb_runtime ---------------------------------------------------------------------
def runtime_rules(values: Values) -> Iterator[str]:
    yield from _names(values, "wandb_runtime_user", "wandb_runtime_group")
    yield from _paths(values, "wandb_runtime_home", "wandb_runtime_state_dir", removable=True)
    yield from _paths(values, "wandb_runtime_venv", "wandb_runtime_uv_path", "wandb_runtime_system_python")
    yield from _not_writable_by_runs(
        values,
        "wandb_runtime_state_dir",
        "wandb_runtime_home",
        "wandb_runtime_venv",
        "wandb_runtime_uv_path",
        "wandb_runtime_system_python",
    )
    python = values["wandb_runtime_python"]
    if isinstance(python, (int, float)) and not isinstance(python, bool):
        yield (
            f"wandb_runtime_python is the number {python}: YAML reads an unquoted 3.10 as 3.1; "
            f'quote the version, e.g. wandb_runtime_python: "3.10"'
        )
    elif isinstance(python, str) and python != "system":
        match = re.match(r"^3\.([0-9]+)(\.[0-9]+)?$", python)
        if not match or int(match.group(1)) not in PYTHON_MINORS:
            yield (
                f"wandb_runtime_python must be 'system' or a CPython version uv can install, "
                f"3.{PYTHON_MINORS[0]} to 3.{PYTHON_MINORS[-1]} such as '3.12' (got {python!r})"
            )
    uv_version = values["wandb_runtime_uv_version"]
    if isinstance(uv_version, str) and not UV_VERSION.match(uv_version):
        yield f"wandb_runtime_uv_version must be a version such as 0.13.8 (got {uv_version!r})"
    version = values["wandb_runtime_wandb_version"]
    if isinstance(version, str) and not VERSION.match(version):
        yield f"wandb_runtime_wandb_version must be a version such as 0.31.0 (got {version!r})"
    if values["wandb_runtime_uv_source"] == "controller":
        path = values["wandb_runtime_uv_controller_path"]
        if isinstance(path, str) and not values.controller.executable(path):
            yield (
                f"wandb_runtime_uv_source is controller, but there is no executable uv at {path} on "
                "the controller: set wandb_runtime_uv_controller_path, or use wandb_runtime_uv_source: pypi"
            )
    cache = values["wandb_runtime_wheelhouse_cache"]
    if isinstance(cache, str) and not cache.startswith(("/", "~")):
        yield (
            f"wandb_runtime_wheelhouse_cache must be an absolute path on the controller or start with ~ "
            f"(got {cache!r})"
        )
    for name in ("wandb_runtime_index_url", "wandb_runtime_python_install_mirror"):
        value = values[name]
        if isinstance(value, str) and value and not URL.match(value):
            yield (
                f"{name} must be an http:// or https:// URL such as https://pypi.org/simple "
                f"(got {redacted(value)!r})"
            )
    sha256 = values["wandb_runtime_uv_sha256"]
    if isinstance(sha256, dict):
        for arch, digest in sha256.items():
            if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
                yield f"wandb_runtime_uv_sha256.{arch} must be a sha256 of 64 hex digits (got {digest!r})"
    yield from _requirements(values, "wandb_runtime_extra_packages", values["wandb_runtime_extra_packages"])
    constraints = values["wandb_runtime_constraints"]
    yield from _requirements(values, "wandb_runtime_constraints", constraints)
    if isinstance(constraints, list) and isinstance(version, str):
        pins = [str(c).replace(" ", "") for c in constraints]
        if f"wandb=={version}" not in pins:
            yield (
                f"wandb_runtime_constraints must keep wandb=={version} (wandb_runtime_wandb_version), "
                "or the code's requirements could move the wandb the agents run"
            )
    yield from _environment(values, "wandb_runtime_environment", ("WANDB_API_KEY",))


def _files_not_in_runs(values: Values, *names: str) -> Iterator[str]:
    """These directories of root's must not lie where runs write (nor hold it)."""
    yield from _not_writable_by_runs(values, "wandb_runtime_state_dir", *names)
    yield from _not_writable_by_runs(values, "wandb_agent_state_dir", *names)


# -- wandb_credentials -----------------------------------------------------------------
def credentials_rules(values: Values) -> Iterator[str]:
    key = values["wandb_credentials_api_key"]
    if key is not MISSING:
        key = "" if key is None else str(key).strip()
        if not key:
            yield (
                "wandb_credentials_api_key is empty: put the key in Ansible Vault (ansible-vault "
                "encrypt_string --name wandb_credentials_api_key), or export WANDB_API_KEY on the controller"
            )
        elif re.search(r"\s", key):
            yield (
                "wandb_credentials_api_key has a space or line break inside: copy the key again "
                "(from https://wandb.ai/authorize, or your server's /authorize page)"
            )
        elif not API_KEY.match(key):
            yield (
                f"wandb_credentials_api_key is not a W&B API key: one is 40 or more letters, digits "
                f"or _, optionally after a prefix such as local- (this one has {len(key)} characters)"
            )
    base = values["wandb_credentials_base_url"]
    if isinstance(base, str) and not BASE_URL.match(base):
        shown = repr(base) if "@" not in base else "a URL with credentials in it"
        yield (
            f"wandb_credentials_base_url must be the W&B server's address, such as https://api.wandb.ai "
            f"or https://wandb.example.com:8080, without a path (got {shown})"
        )
    for name in ("wandb_credentials_http_proxy", "wandb_credentials_https_proxy"):
        value = values[name]
        if isinstance(value, str) and value and not PROXY_URL.match(value):
            # The value may hold a password: it is not repeated.
            yield f"{name} is not a proxy URL such as http://proxy.example.com:3128 or http://user:pass@proxy:3128"
    no_proxy = values["wandb_credentials_no_proxy"]
    if isinstance(no_proxy, str) and re.search(r"\s", no_proxy):
        yield f"wandb_credentials_no_proxy must be a comma-separated list without spaces (got {no_proxy!r})"
    yield from _paths(values, "wandb_credentials_dir", removable=True)
    yield from _files_not_in_runs(values, "wandb_credentials_dir")


# -- wandb_code ------------------------------------------------------------------------
def code_rules(values: Values) -> Iterator[str]:
    controller = values.controller
    source = values["wandb_code_source"]
    if source == "local":
        path = values["wandb_code_local_path"]
        if isinstance(path, str):
            if not path:
                yield (
                    "wandb_code_local_path is empty: with wandb_code_source local, give the code's "
                    "directory on the controller (or use wandb_code_source: git)"
                )
            elif not controller.isdir(path):
                yield f"wandb_code_local_path {path!r} is not a directory on the controller"
        if not controller.which("rsync"):
            yield "pushing the code needs rsync on the controller: install it (apt-get install rsync)"
    elif source == "git":
        repo = values["wandb_code_git_repo"]
        if isinstance(repo, str) and not repo:
            yield "wandb_code_git_repo is empty: with wandb_code_source git, give the repository's URL"
        elif isinstance(repo, str) and not GIT_URL.match(repo):
            yield (
                f"wandb_code_git_repo is not a git URL (got {redacted(repo)!r}): use https://host/path.git, "
                "ssh://host/path.git, git@host:path.git or file:///path"
            )
        version = values["wandb_code_git_version"]
        if isinstance(version, str) and not version:
            yield (
                "wandb_code_git_version is empty: give the tag, branch or commit to check out "
                "(a tag or commit makes the runs reproducible)"
            )
        elif isinstance(version, str) and re.search(r"\s", version):
            yield f"wandb_code_git_version must be a tag, branch or commit without spaces (got {version!r})"
    yield from _paths(values, "wandb_code_dest", removable=True)
    yield from _files_not_in_runs(values, "wandb_code_dest")
    yield from _names(values, "wandb_code_group")
    requirements = values["wandb_code_requirements"]
    if isinstance(requirements, str) and requirements not in ("auto", "none"):
        if os.path.isabs(requirements) or ".." in requirements.split("/"):
            yield (
                f"wandb_code_requirements must be auto, none, or a path inside the code such as "
                f"requirements/gpu.txt (got {requirements!r})"
            )
        elif source == "local" and isinstance(values["wandb_code_local_path"], str):
            local = values["wandb_code_local_path"]
            if local and controller.isdir(local) and not controller.isfile(os.path.join(local, requirements)):
                yield (
                    f"wandb_code_requirements {requirements!r} is not a file in "
                    f"wandb_code_local_path ({local})"
                )
    yield from _local_requirements(values)
    extra = values["wandb_code_extra_paths"]
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        src, dest = item.get("src"), item.get("dest")
        if isinstance(dest, str) and (not dest.strip("/") or os.path.isabs(dest) or ".." in dest.split("/")):
            yield (
                f"wandb_code_extra_paths: dest {dest!r} must be a path inside the code directory, "
                "such as datasets (not absolute, no ..)"
            )
        if isinstance(src, str) and not controller.exists(src):
            yield f"wandb_code_extra_paths: src {src!r} does not exist on the controller"
    yield from _requirements(values, "wandb_code_constraints", values["wandb_code_constraints"])


def _local_requirements(values: Values) -> Iterator[str]:
    """The local code's requirements file (the one the hosts will install) asks for packages
    from the index only, and is a file of its own (not a link out of the code)."""
    local, wanted = values["wandb_code_local_path"], values["wandb_code_requirements"]
    if values["wandb_code_source"] != "local" or not (isinstance(local, str) and local):
        return
    if not values.controller.isdir(local) or not isinstance(wanted, str) or wanted == "none":
        return
    for candidate in requirement_candidates(wanted):
        path = os.path.join(local, candidate)
        if values.controller.islink(path):
            yield (
                f"{candidate} in wandb_code_local_path ({local}) is a symbolic link: root installs it on "
                "every host; make it a file of its own"
            )
            return
        if not values.controller.isfile(path):
            continue
        text = values.controller.read(path)
        if text is not None:
            yield from file_problems(text, path, f"{candidate} in wandb_code_local_path ({local})")
        return


# -- wandb_sweep -----------------------------------------------------------------------
def sweep_rules(values: Values) -> Iterator[str]:
    ref = values["wandb_sweep_id"]
    if isinstance(ref, str) and ref:
        parts = ref.strip().split("/")
        if not 1 <= len(parts) <= 3 or not all(parts) or not SWEEP_NAME_RE.match(parts[-1]):
            yield (
                f"wandb_sweep_id must be ID, PROJECT/ID or ENTITY/PROJECT/ID, such as "
                f"team/beauty-score/uzag2px2 (got {ref!r})"
            )
        else:
            named = dict(zip(("entity", "project")[3 - len(parts) :], parts[:-1], strict=True))
            for name, part in named.items():
                yield from _w_and_b_name(f"wandb_sweep_id's {name}", part, name)
            if len(parts) == 1 and not values["wandb_sweep_project"]:
                yield "wandb_sweep_id names no project: give PROJECT/ID, or set wandb_sweep_project"
    for name, what in (("wandb_sweep_project", "project"), ("wandb_sweep_entity", "entity")):
        value = values[name]
        if isinstance(value, str) and value:
            yield from _w_and_b_name(name, value, what)


def sweep_config_rules(config, from_variables: bool) -> Iterator[str]:
    """The rendered sweep config, each problem named by the variable it came from."""
    for problem in sweep_config_problems(config):
        if from_variables:
            head = re.match(r"^(unknown top-level keys|[a-z_]+)", problem)
            key = head.group(1) if head else ""
            variable = {
                "method": "wandb_sweep_method",
                "parameters": "wandb_sweep_parameters",
                "metric": "wandb_sweep_metric",
                "early_terminate": "wandb_sweep_early_terminate",
                "command": "wandb_sweep_command",
                "program": "wandb_sweep_program",
                "name": "wandb_sweep_name",
                "description": "wandb_sweep_description",
                "project": "wandb_sweep_project",
                "entity": "wandb_sweep_entity",
            }.get(key)
            if variable:
                yield variable + problem[len(key) :]
            else:
                yield f"wandb_sweep_extra: {problem}"
        else:
            yield f"the sweep config from wandb_sweep_template: {problem}"


def deploy_rules(values: Values, config) -> Iterator[str]:
    """Rules across roles: the sweep's program must be in the pushed code."""
    if values["wandb_code_source"] != "local" or not isinstance(config, dict):
        return
    local, program = values["wandb_code_local_path"], config.get("program")
    if not (isinstance(local, str) and local and values.controller.isdir(local)):
        return
    if isinstance(program, str) and program and not values.controller.isfile(os.path.join(local, program)):
        yield (
            f"wandb_sweep_program {program!r} is not a file in wandb_code_local_path ({local}): "
            "give the script's path relative to that directory"
        )


# -- wandb_agent -----------------------------------------------------------------------
GPUS_AUTO = "auto"
# What gpu_plan() reads besides the host's nvidia-smi report.
GPU_VARIABLES = ("wandb_agent_gpus", "wandb_agent_gpus_per_agent", "wandb_agent_gpus_missing")


def gpu_plan(wanted, per_agent: int, when_none: str, probe: dict | None) -> tuple[list, str | None]:
    """The GPUs of each agent of a host: a list with one entry per agent, each a list of the
    GPUs it is pinned to (index, uuid, bus_id, minor), or [] for CPU agents (wandb_agent_count),
    and why that cannot be (None: it can).

    ``wanted`` is wandb_agent_gpus (auto, or a list of entries of indexes or UUIDs joined by
    commas); ``probe`` the host's answer to ``nvidia-smi -q -x`` (rc, stdout). GPUs go to
    agents in PCI bus order, which a reboot does not change (nvidia-smi's index can)."""
    if not wanted:
        return [], None
    gpus: list[dict] = []
    why = "nvidia-smi is not there"
    probe = probe or {}
    if probe.get("rc") == 0:
        try:
            gpus = parse_gpus(str(probe.get("stdout") or ""))
            why = "nvidia-smi lists none"
        except ValueError as err:
            why = f"nvidia-smi's report cannot be read ({err})"
    elif probe.get("rc") not in (None, 127) or probe.get("msg"):
        said = str(probe.get("stderr") or probe.get("stdout") or probe.get("msg") or "").strip()
        why = f"nvidia-smi failed: {(said.splitlines() or ['exit ' + str(probe.get('rc'))])[0][:200]}"
    if not gpus:
        if wanted == GPUS_AUTO and when_none == "cpu":
            return [], None
        return [], (
            f"wandb_agent_gpus is {wanted if wanted == GPUS_AUTO else 'a list'} but this host has no "
            f"NVIDIA GPU ({why}): set wandb_agent_gpus: [] for CPU agents on it"
            + (
                ", or wandb_agent_gpus_missing: cpu to run CPU agents where auto finds none"
                if wanted == GPUS_AUTO
                else ""
            )
        )
    gpus = sorted(gpus, key=lambda g: g["bus_id"])
    fields = ("index", "uuid", "bus_id", "minor")
    if wanted == GPUS_AUTO:
        if len(gpus) % per_agent:
            return [], (
                f"wandb_agent_gpus_per_agent is {per_agent} but this host has {len(gpus)} GPUs: set it to a "
                f"number that divides {len(gpus)} for this host, or list the GPUs in wandb_agent_gpus"
            )
        chosen = [gpus[i : i + per_agent] for i in range(0, len(gpus), per_agent)]
    else:
        by_id = {str(g["index"]): g for g in gpus} | {g["uuid"].lower(): g for g in gpus}
        chosen, absent = [], []
        for entry in wanted:
            devices = [d.strip() for d in str(entry).split(",")]
            absent += [d for d in devices if d.lower() not in by_id]
            chosen.append([by_id[d.lower()] for d in devices if d.lower() in by_id])
        if absent:
            have = ", ".join(f"{g['index']} ({g['uuid']})" for g in sorted(gpus, key=lambda g: g["index"]))
            return [], (
                f"wandb_agent_gpus lists GPU {', '.join(absent)}, which this host does not have (nvidia-smi "
                f"lists {have}): name GPUs it has, or set wandb_agent_gpus: auto"
            )
    return [[{k: g[k] for k in fields} for g in agent] for agent in chosen], None


def agent_rules(values: Values) -> Iterator[str]:
    gpus = values["wandb_agent_gpus"]
    count = values["wandb_agent_count"]
    if isinstance(gpus, str) and gpus != GPUS_AUTO:
        yield (
            f"wandb_agent_gpus is {gpus!r}: give auto (one agent per GPU the host has, read at "
            'deploy) or a list of GPU ids, such as [0, 1] or ["0,1", "2,3"]'
        )
    elif not isinstance(gpus, (str, list)) and gpus not in (None, MISSING):
        yield f"wandb_agent_gpus must be auto or a list of GPU ids (got {type(gpus).__name__})"
    yield from _at_least(values, "wandb_agent_gpus_per_agent", 1, "GPU")
    yield from _at_least(values, "wandb_agent_gpu_busy_mib", 0, "MiB (0: any other process)")
    if isinstance(gpus, list) and gpus:
        if len(gpus) > 64:
            yield f"wandb_agent_gpus lists {len(gpus)} agents: at most 64 per host"
        seen: dict[str, int] = {}
        for entry in gpus:
            devices = str(entry).split(",")
            if any(d.strip().lower() in ("all", "none", GPUS_AUTO) for d in devices):
                yield (
                    f"wandb_agent_gpus has {entry!r}: an entry names GPUs by index or UUID, such as 0 or "
                    '"0,1"; for every GPU of the host, one agent each, set wandb_agent_gpus: auto'
                )
                continue
            if not all(GPU.match(d.strip()) for d in devices):
                yield (
                    f"wandb_agent_gpus has {entry!r}: each entry is a GPU index or UUID, or several "
                    'joined by commas, such as 0 or "0,1"'
                )
                continue
            for device in devices:
                seen[device.strip()] = seen.get(device.strip(), 0) + 1
        twice = sorted(d for d, n in seen.items() if n > 1)
        if twice:
            yield (
                f"wandb_agent_gpus lists GPU {', '.join(twice)} more than once ({gpus}): each GPU "
                "belongs to one agent; list each device once"
            )
    elif _integer(count) and not 1 <= count <= 64:
        yield f"wandb_agent_count must be 1 to 64 agents per host (got {count})"
    yield from _at_least(values, "wandb_agent_term_timeout", 1, "second")
    yield from _at_least(values, "wandb_agent_drain_timeout", 0, "seconds")
    yield from _at_least(values, "wandb_agent_stagger_seconds", 0, "seconds")
    yield from _at_least(values, "wandb_agent_stagger_slots", 1, "slot")
    yield from _at_least(values, "wandb_agent_runs_per_agent", 0, "runs (0: until the sweep ends)")
    yield from _at_least(values, "wandb_agent_max_consecutive_failures", 0, "runs (0: never stop)")
    yield from _at_least(values, "wandb_agent_min_free_mb", 0, "MB (0: no check)")
    yield from _at_least(values, "wandb_agent_restart_sec", 0, "seconds")
    yield from _at_least(values, "wandb_agent_restart_burst", 1, "restart")
    yield from _at_least(values, "wandb_agent_restart_interval", 1, "second")
    yield from _environment(values, "wandb_agent_environment", UNIT_ENVIRONMENT)
    yield from _names(values, "wandb_agent_user", "wandb_agent_group")
    yield from _paths(
        values,
        "wandb_agent_venv",
        "wandb_agent_home",
        "wandb_agent_state_dir",
        "wandb_agent_code_dir",
        "wandb_agent_credentials_dir",
    )
    yield from _files_not_in_runs(
        values, "wandb_agent_venv", "wandb_agent_home", "wandb_agent_code_dir", "wandb_agent_credentials_dir"
    )
    allow = values["wandb_agent_ip_allow"]
    for entry in allow if isinstance(allow, list) else []:
        if not _ip_network(str(entry)):
            yield (
                f"wandb_agent_ip_allow has {entry!r}: give IP addresses or networks such as "
                "169.254.169.254 or fe80::/10"
            )
    sweep = values["wandb_agent_sweep"]
    if isinstance(sweep, str) and sweep and len(sweep.split("/")) != 3:
        yield f"wandb_agent_sweep must be ENTITY/PROJECT/ID (got {sweep!r})"
    status_file = values["wandb_agent_status_file"]
    if isinstance(status_file, str) and status_file:
        parent = os.path.dirname(os.path.abspath(status_file))
        if not values.controller.isdir(parent):
            yield (
                f"wandb_agent_status_file {status_file!r}: the directory {parent} does not exist "
                "on the controller"
            )


def _ip_network(text: str):
    import ipaddress

    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


# -- the playbooks' own variables ------------------------------------------------------
def playbook_rules(values: Values) -> Iterator[str]:
    serial = values["sweep_fleet_serial"]
    if serial is not MISSING and not SERIAL.match(str(serial).strip()):
        yield (
            f"sweep_fleet_serial must be a number of hosts of at least 1, or a percentage such as "
            f"25% (got {serial!r}); 0 would stop every host at once"
        )


# sbatch --time: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds, or unlimited (sbatch(1)).
SLURM_TIME = re.compile(r"^(\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|unlimited|infinite|UNLIMITED|INFINITE)$")
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


def slurm_rules(values: Values) -> Iterator[str]:
    path = values["wandb_slurm_dir"]
    if isinstance(path, str):
        if not path:
            yield (
                "wandb_slurm_dir is empty: give the absolute path of a directory on the shared filesystem "
                "that every compute node sees at the same path, e.g. /shared/$USER/sweep-fleet"
            )
        elif not path.startswith("/") or "\n" in path or "/../" in f"{path}/":
            yield f"wandb_slurm_dir must be an absolute path without .. (got {path!r})"
    agents = values["wandb_slurm_agents"]
    if isinstance(agents, int) and not 1 <= agents <= 10000:
        yield f"wandb_slurm_agents must be 1 to 10000 array tasks (got {agents})"
    name = values["wandb_slurm_job_name"]
    if isinstance(name, str) and not SLURM_NAME.match(name):
        yield f"wandb_slurm_job_name must be 1 to 64 letters, digits, _ . + - (got {name!r})"
    limit = values["wandb_slurm_time_limit"]
    if isinstance(limit, str) and limit and not SLURM_TIME.match(limit):
        yield (
            f"wandb_slurm_time_limit {limit!r} is not a SLURM time: use minutes (120), hours:minutes:seconds "
            "(02:00:00) or days-hours:minutes:seconds (2-00:00:00)"
        )
    for name in (
        "wandb_slurm_partition",
        "wandb_slurm_account",
        "wandb_slurm_qos",
        "wandb_slurm_gres",
        "wandb_slurm_mem",
    ):
        value = values[name]
        if isinstance(value, str) and (any(c.isspace() for c in value) or value.startswith("-")):
            yield f"{name} must be one word, as sbatch takes it (got {value!r})"
    signal_at, term = values["wandb_slurm_signal_seconds"], values["wandb_slurm_term_timeout"]
    if isinstance(term, int) and term < 1:
        yield f"wandb_slurm_term_timeout must be at least 1 second (got {term})"
    if isinstance(signal_at, int) and isinstance(term, int) and signal_at <= term:
        yield (
            f"wandb_slurm_signal_seconds ({signal_at}) must exceed wandb_slurm_term_timeout ({term}): the "
            "preempted run needs that time before the limit; raise the first or lower the second"
        )
    requeues = values["wandb_slurm_max_requeues"]
    if isinstance(requeues, int) and requeues < 0:
        yield f"wandb_slurm_max_requeues must be 0 or more (got {requeues})"
    options, setup = values["wandb_slurm_extra_options"], values["wandb_slurm_setup"]
    for option in options if isinstance(options, list) else []:
        if not str(option).startswith("-") or "\n" in str(option):
            yield (
                f"wandb_slurm_extra_options has {option!r}: each entry is one sbatch option, such as "
                "--constraint=a100"
            )
    for line in setup if isinstance(setup, list) else []:
        if "\n" in str(line):
            yield "wandb_slurm_setup: give one shell line per entry"


RULES: dict[str, Callable[[Values], Iterator[str]]] = {
    "wandb_runtime": runtime_rules,
    "wandb_credentials": credentials_rules,
    "wandb_code": code_rules,
    "wandb_sweep": sweep_rules,
    "wandb_agent": agent_rules,
    "wandb_slurm": slurm_rules,
    "playbook": playbook_rules,
}


def problems(roles: list[str], values: dict, controller: Controller | None = None) -> list[str]:
    """Every problem of the given roles' inputs (plus the playbooks' own variables)."""
    checked = Values(values, controller or Controller())
    found: list[str] = []
    for role in [*roles, "playbook"]:
        for problem in RULES[role](checked):
            if problem not in found:
                found.append(problem)
    return found


# -- the hosts ---------------------------------------------------------------------------
# What the Windows path needs of the inputs (the playbooks read these for each host).
WINDOWS_VARIABLES = (
    "wandb_runtime_python",
    "wandb_runtime_windows_python",
    "wandb_runtime_windows_home",
    "wandb_code_source",
    "wandb_code_extra_paths",
)


# What the platform check reads besides the facts.
PLATFORM_VARIABLES = (*WINDOWS_VARIABLES, "wandb_agent_ip_allow")


def slurm_login_problem(facts: dict, probe: dict) -> str | None:
    """Why a SLURM login node cannot submit the agents, from its facts and its answer to
    ``id -u`` and ``command -v`` of SLURM's commands (None: it can)."""
    system = facts.get("system") or facts.get("os_family") or "unknown"
    if system != "Linux":
        return f"a SLURM login node runs Linux (this one runs {system}): take it out of the group slurm_login"
    lines = str(probe.get("stdout") or "").split("\n")
    if probe.get("rc") != 0 or not lines or not lines[0].strip().isdigit():
        return "cannot read the login user and SLURM's commands (id -u, command -v sbatch)"
    if lines[0].strip() == "0":
        return (
            "the login user is root: SLURM jobs run as the user who submits them; connect as the "
            "cluster user who runs the sweep (ansible_user), without become"
        )
    missing = [line.split()[1] for line in lines[1:] if line.startswith("missing ")]
    if missing:
        return (
            f"SLURM's commands are not on the login user's PATH: {', '.join(missing)}; install SLURM's "
            "client (apt-get install slurm-client) or fix the login shell's PATH"
        )
    return None


def platform_problem(facts: dict, values: dict | None = None, runs_agents: bool = False) -> str | None:
    """Why a host cannot run the agents, from its facts and, for Windows hosts, the inputs
    the Windows path depends on (None: it can). ``runs_agents``: the playbook starts agents,
    whose runs must be able to resolve names."""
    system = facts.get("system") or facts.get("os_family") or "unknown"
    if system == "Linux":
        manager = facts.get("service_mgr", "unknown")
        if manager != "systemd":
            return (
                f"Linux without systemd (its service manager is {manager}): the agents run as "
                "systemd services; use a host with systemd 250 or newer (Debian 12, Ubuntu 22.04 and later)"
            )
        return (
            resolver_problem(facts, (values or {}).get("wandb_agent_ip_allow") or []) if runs_agents else None
        )
    if facts.get("os_family") == "Windows" or system == "Win32NT":
        return windows_problem(facts, values or {})
    name = {"Darwin": "macOS"}.get(system, system)
    return (
        f"{name} ({facts.get('distribution', system)} {facts.get('distribution_version', '')}".rstrip()
        + ") is not supported: sweep-fleet runs agents on Linux hosts with systemd and on Windows hosts"
    )


# What a Windows host's CreateProcess finds as the base interpreter, not the venv's: it
# searches the agent's own image directory first (cpython#86207).
BASE_INTERPRETERS = {
    "${interpreter}",
    "python",
    "python3",
    "python.exe",
    "python3.exe",
    "py",
    "py.exe",
    "pythonw",
}


def command_problem(command: list[str], facts: dict) -> str | None:
    """Why the sweep's run command cannot run on this host's operating system (None: it can).
    One sweep serves every host, so each host checks the command against its own system."""
    words = [word for word in command if word != "${env}"]
    if not words:
        return None
    first = words[0]
    windows = facts.get("os_family") == "Windows" or facts.get("system") == "Win32NT"
    fix = "use the default command, whose .sweep-fleet-venv/bin/python is the venv's Python on every host"
    if windows and first.lower() in BASE_INTERPRETERS:
        return (
            f"wandb_sweep_command starts with {first!r}, which on Windows runs the base interpreter, not "
            f"the venv's (cpython#86207): {fix}"
        )
    if windows and first.startswith("/"):
        return f"wandb_sweep_command starts with the Linux path {first!r}, which Windows cannot run: {fix}"
    if not windows and (
        re.match(r"^[A-Za-z]:[\\/]", first) or "\\" in first or first.lower().endswith(".exe")
    ):
        return f"wandb_sweep_command starts with the Windows path {first!r}, which Linux cannot run: {fix}"
    return None


def resolver_problem(facts: dict, allow: list) -> str | None:
    """The host resolves names through a link-local address (Google Cloud's images use the
    metadata server, 169.254.169.254), which the agents' sandbox closes: their runs could
    not reach W&B. None when it does not, or when wandb_agent_ip_allow opens it."""
    import ipaddress

    opened = [net for net in (_ip_network(str(entry)) for entry in allow) if net]
    for server in (facts.get("dns") or {}).get("nameservers") or []:
        try:
            address = ipaddress.ip_address(str(server).split("%", 1)[0])
        except ValueError:
            continue
        if address.is_link_local and not any(
            address.version == net.version and address in net for net in opened
        ):
            return (
                f"it resolves names through {server}, a link-local address closed to the agents' runs "
                "(the cloud's metadata service lives there): use a local resolver such as systemd-resolved "
                f"(127.0.0.53), or set wandb_agent_ip_allow: ['{server}'] (runs may then reach it)"
            )
    return None


# The CPython versions Windows hosts may have installed: wandb 0.31's Requires-Python is
# >=3.10 (tests/unit/test_inputs.py checks it against the pinned wandb), up to the newest
# the project tests.
WINDOWS_PYTHON_MINORS = range(10, 15)
WINDOWS_PYTHON_FIX = (
    "install Python for all users, e.g. winget install --scope machine --id Python.Python.3.12, "
    "and give its python.exe as wandb_runtime_windows_python"
)


def windows_python_problem(path: object, rc: int, stdout: str) -> str | None:
    """Whether the Python at wandb_runtime_windows_python runs and is a version the agents
    can use, from what it printed for ``'%d.%d' % sys.version_info[:2]``."""
    if rc != 0:
        return f"Windows host: wandb_runtime_windows_python {path!r} does not run there: {WINDOWS_PYTHON_FIX}"
    match = re.match(r"^3\.([0-9]+)$", stdout.strip())
    if not match or int(match.group(1)) not in WINDOWS_PYTHON_MINORS:
        first, last = WINDOWS_PYTHON_MINORS[0], WINDOWS_PYTHON_MINORS[-1]
        return (
            f"Windows host: wandb_runtime_windows_python {path!r} is Python {stdout.strip() or '?'}, and "
            f"the agents need 3.{first} to 3.{last}: {WINDOWS_PYTHON_FIX}"
        )
    return None


def windows_problem(facts: dict, values: dict) -> str | None:
    """What keeps a Windows host from the Windows path, one message for all of it."""
    found = []
    arch = str(facts.get("architecture2") or facts.get("architecture") or "")
    if arch and arch not in ("x86_64", "64-bit"):
        found.append(
            f"its CPU is {arch}: Windows hosts need x86_64 (the wheelhouse carries win_amd64 wheels)"
        )
    if values.get("wandb_runtime_python", "system") != "system":
        found.append(
            f"wandb_runtime_python is {values['wandb_runtime_python']!r}: Windows hosts use the installed "
            "Python at wandb_runtime_windows_python; set wandb_runtime_python: system for them"
        )
    for name in ("wandb_runtime_windows_python", "wandb_runtime_windows_home"):
        value = values.get(name)
        if value is not None and not re.match(r"^[A-Za-z]:\\", str(value)):
            found.append(f"{name} must be an absolute Windows path such as C:\\..., not {value!r}")
    if values.get("wandb_code_source", "local") != "local":
        found.append(
            "wandb_code_source is git: Windows hosts get the code from the controller; set "
            "wandb_code_source: local (with wandb_code_local_path) for them"
        )
    if values.get("wandb_code_extra_paths"):
        found.append(
            "wandb_code_extra_paths is not supported on Windows hosts yet: put those files in the code"
        )
    if not found:
        return None
    return "Windows host: " + "; ".join(found)
