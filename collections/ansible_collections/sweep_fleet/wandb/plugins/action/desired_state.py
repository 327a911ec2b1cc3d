# Copyright: sweep-fleet developers
# Apache License 2.0
"""The digest of a host's desired state, against the digest of its record of the last deploy.

Runs on the controller only (no round trip). The digest covers everything a deploy of the
host follows: the values of every role option for the host (the roles' defaults under the
inventory's and -e's), the host's facts and GPU plan, the sweep and its state, this
collection's code and templates, the playbook's own templates and files, and the
controller's files the deploy copies (the code, the extra paths, uv). It is keyed with the
host's W&B API key (HMAC-SHA256): the digest can be shown and stored while the inputs it
covers (the key, a proxy's password) stay unguessable from it.

Besides the digest, the digests of parts of it (``parts``), kept in the record too: ``venv``,
what shapes the venv (see VENV_CODE_OPTIONS), and ``settings``, everything but the local
code's files. A part that is as recorded on a host that has not drifted (``same``) is
converged there: a staged update leaves the venv alone then, and where the settings are as
recorded (only the code changed) it writes nothing but the code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
from pathlib import Path

from ansible.errors import AnsibleError
from ansible_collections.sweep_fleet.wandb.plugins.action.preflight import ROLE_ORDER, ROLES_DIR, SLURM_GROUP
from ansible_collections.sweep_fleet.wandb.plugins.action.preflight import ActionModule as PreflightAction
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.host_record import TREE_LIMIT

COLLECTION = Path(__file__).resolve().parents[2]
# The facts the sweep role sets, which the agents follow.
SWEEP_FACTS = ("wandb_sweep_path", "wandb_sweep_state", "wandb_sweep_predecessor", "wandb_sweep_url")
GIT_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# How a host's agents are stopped and reported: nothing a deploy writes to the host. An
# update.yml with -e wandb_agent_stop_mode=preempt changes no host's desired state.
NOT_DEPLOYED = frozenset({"wandb_agent_stop_mode", "wandb_agent_drain_timeout", "wandb_agent_status_file"})
# The venv part: besides the runtime role's options, the code role's options that the runtime
# role reads (its vars/main.yml) or the install of the code's requirements follows, and the
# local code's requirement files (the wheelhouse holds what they name). Not the code itself:
# an update of the code alone leaves the venv as it is. tests/unit/test_host_record.py holds
# this list against what the runtime role reads.
VENV_CODE_OPTIONS = (
    "wandb_code_source",
    "wandb_code_local_path",
    "wandb_code_dest",
    "wandb_code_keep",
    "wandb_code_requirements",
    "wandb_code_venv",
    "wandb_code_uv_path",
    "wandb_code_constraints",
    "wandb_code_environment",
)


def deployed_options(specs: dict[str, dict]) -> list[str]:
    """The options of the roles' main entry points (``specs``: each role's argument specs)
    that shape what a deploy leaves on a host."""
    names = {name for spec in specs.values() for name in spec.get("main", {}).get("options", {})}
    return sorted(names - NOT_DEPLOYED)


def tree_digest(path: str, content: bool = False) -> str:
    """A hash of the names, types, modes, sizes and modification times under ``path`` (and,
    with ``content``, the files' content), or of ``path`` itself when it is a file. Python's
    caches (``__pycache__``) are left out: running the controller writes them."""
    digest = hashlib.sha256()

    def add(rel: str, full: str) -> None:
        st = os.lstat(full)
        line = f"{rel}\t{stat.S_IFMT(st.st_mode)}\t{st.st_mode:o}\t"
        if stat.S_ISREG(st.st_mode):
            line += f"{st.st_size}\t{st.st_mtime_ns}"
            if content:
                with open(full, "rb") as handle:
                    line += "\t" + hashlib.sha256(handle.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            line += os.readlink(full)
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")

    if not os.path.lexists(path):
        return "missing"
    if not os.path.isdir(path) or os.path.islink(path):
        add(".", path)
        return digest.hexdigest()
    count = 0
    for top, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(dirs + files):
            count += 1
            if count > TREE_LIMIT:
                raise AnsibleError(f"{path}: more than {TREE_LIMIT} entries")
            full = os.path.join(top, name)
            add(os.path.relpath(full, path), full)
    return digest.hexdigest()


def requirements_digest(code: str, candidates: list[str]) -> str:
    """The content of the local code's requirement files (``candidates``, relative to ``code``).
    The preflight lets through only files that name packages (no other file, no local path or
    URL: module_utils inputs), so their content is all the venv follows of the code."""
    digest = hashlib.sha256()
    for rel in candidates:
        try:
            with open(os.path.join(code, rel), "rb") as handle:
                seen = hashlib.sha256(handle.read()).hexdigest()
        except FileNotFoundError:
            seen = "missing"
        except OSError:  # the preflight names it; the whole code stands for it meanwhile
            return "code " + tree_digest(code)
        digest.update(f"{rel}\t{seen}\n".encode())
    return digest.hexdigest()


def keyed(key: str, inputs: dict) -> str:
    """The HMAC-SHA256 of ``inputs`` (as JSON), keyed with the host's API key."""
    return hmac.new(
        key.encode(), json.dumps(inputs, sort_keys=True, default=str).encode(), hashlib.sha256
    ).hexdigest()


def part_digests(key: str, common: dict, values: dict, runtime_options: list[str], requirements: str) -> dict:
    """The parts' digests, keyed like the digest (``common``: what every part follows)."""
    venv = {
        **common,
        "values": {name: values.get(name) for name in sorted(set(runtime_options) | set(VENV_CODE_OPTIONS))},
        "uv": common["controller"].get("uv"),
        "requirements": requirements,
    }
    venv.pop("controller")
    # Everything the digest covers but the local code's files (its requirement files are in
    # the venv part): as recorded, a deploy writes nothing on the host but the code.
    settings = {
        **common,
        "values": values,
        "controller": {name: value for name, value in common["controller"].items() if name != "code"},
    }
    return {"venv": keyed(key, venv), "settings": keyed(key, settings)}


def same_parts(recorded: dict, parts: dict, code_local: bool) -> list[str]:
    """The parts as the record holds them, on a host that has not drifted (nothing on it
    changed since: the record's own check, ``recorded``'s drift, found nothing). Not the venv
    for code from git: its requirement files, in the checkout, are not among the inputs."""
    if not recorded.get("found") or recorded.get("drift"):
        return []
    known = recorded.get("parts") or {}
    return sorted(
        name for name, value in parts.items() if known.get(name) == value and (code_local or name != "venv")
    )


class ActionModule(PreflightAction):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(PreflightAction, self).run(tmp, task_vars)
        recorded = self._task.args.get("recorded") or {}
        result["changed"] = False
        specs = {role: self._role_files(role)[0] for role in ROLE_ORDER}
        names = deployed_options(specs)
        values = self._values(tuple(names + list(SWEEP_FACTS)), task_vars)
        key = str(values.get("wandb_credentials_api_key") or "")
        why = self._no_record(task_vars, values) or (None if key else "no API key to key the digest with")
        if why:
            result.update(converged=False, digest="", parts={}, same=[], drift=[why])
            return result
        common = {
            "host": task_vars.get("inventory_hostname"),
            "groups": sorted(task_vars.get("group_names") or []),
            # Not which commands the host has: a deploy that needs one installs it, one that
            # changes nothing does not need it.
            "facts": {
                k: v for k, v in (task_vars.get("ansible_facts") or {}).items() if k != "sweep_fleet_commands"
            },
            "collection": tree_digest(str(COLLECTION), content=True),
            "playbook": self._playbook_files(task_vars),
            "controller": self._controller_files(values),
        }
        digest = keyed(key, {"values": values, **common})
        parts = part_digests(
            key,
            common,
            values,
            deployed_options({"wandb_runtime": specs["wandb_runtime"]}),
            self._requirements(values, task_vars),
        )
        drift = list(recorded.get("drift") or [])
        same = same_parts(recorded, parts, values.get("wandb_code_source") == "local")
        if recorded.get("found") and recorded.get("digest") != digest:
            drift.insert(0, "the desired state changed")
        result.update(
            converged=bool(recorded.get("found")) and not drift,
            digest=digest,
            parts=parts,
            same=same,
            drift=drift,
        )
        return result

    def _requirements(self, values: dict, task_vars: dict) -> str:
        """The local code's requirement files (the code role's __wandb_code_requirement_candidates)."""
        code = values.get("wandb_code_local_path")
        if values.get("wandb_code_source") == "git" or not code:
            return ""
        role_vars = self._loader.load_from_file(
            str(ROLES_DIR / "wandb_code" / "vars" / "main.yml"), unsafe=True, trusted_as_template=True
        )
        variables = {**self._role_files("wandb_code")[1], **task_vars}
        templar = self._templar.copy_with_new_env(available_variables=variables)
        try:
            candidates = templar.template(role_vars["__wandb_code_requirement_candidates"])
        except AnsibleError:
            return "code " + tree_digest(str(code))
        return requirements_digest(str(code), [str(c) for c in candidates])

    @staticmethod
    def _no_record(task_vars: dict, values: dict) -> str | None:
        """Why this host is always deployed in full (None: its record is used)."""
        version = str(values.get("wandb_code_git_version") or "")
        if values.get("wandb_code_source") == "git" and not GIT_SHA_RE.match(version):
            return "code from a git branch or tag, which can move at the remote"
        if SLURM_GROUP in (task_vars.get("group_names") or []):
            return "a SLURM login node"
        if (task_vars.get("ansible_facts") or {}).get("os_family") == "Windows":
            return "a Windows host"
        tags = list(task_vars.get("ansible_run_tags") or ["all"])
        if tags != ["all"] or task_vars.get("ansible_skip_tags"):
            return "a run with --tags or --skip-tags"
        return None

    @staticmethod
    def _playbook_dirs(task_vars: dict) -> list[str]:
        dirs = {os.path.realpath(d) for d in task_vars.get("ansible_search_path") or []}
        if task_vars.get("playbook_dir"):
            dirs.add(os.path.realpath(task_vars["playbook_dir"]))
        return sorted(dirs | {os.path.dirname(d) for d in dirs})

    def _playbook_files(self, task_vars: dict) -> dict:
        """The templates and files next to the playbook that Ansible finds before the roles'
        own. Only those that exist: deploy.yml (at the top) and playbooks/update.yml search
        different directories, and the same files must give the same digest."""
        found = {}
        for base in self._playbook_dirs(task_vars):
            for sub in ("templates", "files"):
                path = os.path.join(base, sub)
                if os.path.lexists(path):
                    found[path] = tree_digest(path, content=True)
        return found

    def _controller_files(self, values: dict) -> dict:
        """The controller's files a deploy copies to the host."""
        files = {}
        if values.get("wandb_code_source") != "git" and values.get("wandb_code_local_path"):
            files["code"] = tree_digest(str(values["wandb_code_local_path"]))
        for extra in values.get("wandb_code_extra_paths") or []:
            if isinstance(extra, dict) and extra.get("src"):
                files[f"extra {extra['src']}"] = tree_digest(str(extra["src"]))
        if values.get("wandb_runtime_uv_source") == "controller" and values.get(
            "wandb_runtime_uv_controller_path"
        ):
            files["uv"] = tree_digest(str(values["wandb_runtime_uv_controller_path"]))
        return files
