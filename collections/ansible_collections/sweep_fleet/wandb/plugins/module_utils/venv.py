# Copyright: sweep-fleet developers
# Apache License 2.0
"""The code of the venv module (plugins/modules/venv.py), shared with the role modules
that converge several steps in one call."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.requirements import (
    file_problems,
    has_hashes,
)

# A requirements file larger than this is not one a person wrote.
REQUIREMENTS_LIMIT = 4 * 1024 * 1024

CHANGE_RE = re.compile(r"^ ([-+]) (\S+)$", re.MULTILINE)
VERSION_RE = re.compile(r"^version_info = (\S+)$", re.MULTILINE)


def _pyvenv(path: str) -> str:
    try:
        with open(os.path.join(path, "pyvenv.cfg")) as handle:
            return handle.read()
    except OSError:
        return ""


class Venv:
    def __init__(self, module: AnsibleModule):
        self.module = module
        self.p = module.params
        env = {k: str(v) for k, v in (self.p["environment"] or {}).items()}
        self.env = env

    def uv(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        rc, out, err = self.module.run_command([self.p["uv"], *args], environ_update=self.env, check_rc=False)
        if check and rc != 0:
            self.module.fail_json(
                msg=f"uv {args[0]} {args[1] if len(args) > 1 else ''} failed: {err.strip()}"
            )
        return rc, out, err

    def interpreter(self) -> str:
        """The interpreter path for the venv, installing a managed Python if asked."""
        python = self.p["python"]
        if os.path.isabs(python):
            if not os.access(python, os.X_OK):
                self.module.fail_json(msg=f"there is no Python at {python} on this host")
            return python
        rc, out, _err = self.uv("python", "find", "--python-preference", "only-managed", python, check=False)
        if rc == 0 and out.strip():
            return out.strip().splitlines()[-1]
        if self.module.check_mode:
            return python
        self.uv("python", "install", python)
        _rc, out, _err = self.uv("python", "find", "--python-preference", "only-managed", python)
        return out.strip().splitlines()[-1]

    def wants_new_venv(self, interpreter: str) -> bool:
        cfg = _pyvenv(self.p["path"])
        if not cfg or not os.path.exists(os.path.join(self.p["path"], "bin", "python")):
            return True
        if not os.path.isabs(interpreter):
            return False  # a managed Python that check mode did not install: cannot compare
        home = re.search(r"^home = (.*)$", cfg, re.MULTILINE)
        real = os.path.realpath(interpreter)
        return not home or os.path.realpath(os.path.join(home.group(1), os.path.basename(real))) != real


def unpack(module: AnsibleModule, archive: str, workdir: str) -> str:
    """The wheelhouse's wheels in a private directory (only plain files, by their base names)."""
    wheels = os.path.join(workdir, "wheels")
    os.mkdir(wheels, 0o700)
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".whl") and "/" not in member.name:
                    with open(os.path.join(wheels, member.name), "wb") as out:
                        shutil.copyfileobj(tar.extractfile(member), out)
    except (OSError, tarfile.TarError) as err:
        module.fail_json(msg=f"cannot read the wheelhouse {archive}: {err}: run the wandb_runtime role")
    return wheels


def read_requirements_file(path: str) -> str:
    """A requirements file's text, opened without following a link (a link: OSError, ELOOP)
    and read only as a regular file of at most REQUIREMENTS_LIMIT bytes (else ValueError).
    Used on the hosts (read_requirements) and on the controller (the runtime action)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > REQUIREMENTS_LIMIT:
            raise ValueError(f"{path} is not a regular file of at most {REQUIREMENTS_LIMIT} bytes")
        return os.read(fd, REQUIREMENTS_LIMIT + 1).decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def read_requirements(module: AnsibleModule, path: str) -> str:
    """The file's text, refused when it is a link, not a regular file, too large, or asks
    for more than packages from the index."""
    try:
        text = read_requirements_file(path)
    except OSError as err:
        if os.path.islink(path):
            module.fail_json(
                msg=f"{path} is a symbolic link: the code's requirements file must be a file of its own"
            )
        module.fail_json(msg=f"cannot read {path}: {err.strerror}")
        raise
    except ValueError as err:
        module.fail_json(msg=str(err))
        raise
    _refuse_problems(module, text, path)
    return text


def given_requirements(module: AnsibleModule, item: dict) -> str:
    """The text of a requirements file given by its content (read on the controller), refused
    as read_requirements refuses a file on the host."""
    text = item["content"]
    if len(text.encode("utf-8")) > REQUIREMENTS_LIMIT:
        module.fail_json(msg=f"{item['path']} is larger than {REQUIREMENTS_LIMIT} bytes")
    _refuse_problems(module, text, item["path"])
    return text


def _refuse_problems(module: AnsibleModule, text: str, path: str) -> None:
    """Fail when the file asks for more than packages from the index."""
    problems = file_problems(text, path)
    if problems:
        module.fail_json(msg="; ".join(problems))


def run(module: AnsibleModule) -> dict:
    p = module.params
    venv = Venv(module)
    result = {"changed": False, "created": False, "installed": [], "removed": []}
    if not os.access(p["uv"], os.X_OK):
        if module.check_mode:  # a fresh host: the runtime role would have installed uv first
            result.update(changed=True, created=p["python"] is not None, installed=list(p["packages"]))
            return result
        module.fail_json(msg=f"uv is not installed at {p['uv']}: run the wandb_runtime role first")
    requirements = list(p["requirements"])
    found = [path for path in p["requirement_candidates"] if os.path.lexists(path)]
    requirements += found[:1]
    given = p["requirement_files"]
    result["requirements"] = requirements + [item["path"] for item in given]
    hashed = [has_hashes(read_requirements(module, path)) for path in requirements]
    hashed += [has_hashes(given_requirements(module, item)) for item in given]
    if p["python"] is None:
        if not os.path.exists(os.path.join(p["path"], "bin", "python")):
            if module.check_mode:  # a fresh host: the runtime role would have made it
                result.update(
                    changed=bool(p["packages"] or result["requirements"]), installed=list(p["packages"])
                )
                return result
            module.fail_json(msg=f"there is no venv at {p['path']}: run the wandb_runtime role first")
    elif venv.wants_new_venv(interpreter := venv.interpreter()):
        result.update(changed=True, created=True)
        if module.check_mode:
            result["installed"] = list(p["packages"])
            return result
        venv.uv("venv", "--clear", "--python", interpreter, p["path"])
    if not p["packages"] and not result["requirements"]:
        return result
    if p["wheelhouse"] and module.check_mode and not os.path.exists(p["wheelhouse"]):
        result.update(changed=True, installed=list(p["packages"]))  # the wheelhouse task would push it
        return result
    workdir = tempfile.mkdtemp(prefix="sweep-fleet-venv-")  # private: mode 0700
    try:
        args = ["pip", "install", "--no-build", "--python", os.path.join(p["path"], "bin", "python")]
        if any(hashed):
            args.append("--require-hashes")
        if p["wheelhouse"]:
            args += ["--no-index", "--find-links", unpack(module, p["wheelhouse"], workdir)]
        if p["constraints"]:
            constraints = os.path.join(workdir, "constraints.txt")
            with open(constraints, "w") as handle:
                handle.write("\n".join(p["constraints"]) + "\n")
            args += ["--constraint", constraints]
        for requirement in requirements:
            args += ["--requirement", requirement]
        for number, item in enumerate(given):
            # By its own name (uv reads a pyproject.toml by its name), in a directory of its own.
            os.mkdir(os.path.join(workdir, f"given{number}"), 0o700)
            path = os.path.join(workdir, f"given{number}", os.path.basename(item["path"]))
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(item["content"])
            args += ["--requirement", path]
        if module.check_mode:
            args.append("--dry-run")
        _rc, _out, err = venv.uv(*args, *p["packages"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for sign, package in CHANGE_RE.findall(err):
        result["installed" if sign == "+" else "removed"].append(package)
    if result["installed"] or result["removed"]:
        result["changed"] = True
    version = VERSION_RE.search(_pyvenv(p["path"]))
    if version:
        result["python_version"] = version.group(1)
    return result


ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "python": {"type": "str"},
    "uv": {"type": "path", "default": "/usr/local/bin/uv"},
    "packages": {"type": "list", "elements": "str", "default": []},
    "requirements": {"type": "list", "elements": "path", "default": []},
    "requirement_candidates": {"type": "list", "elements": "path", "default": []},
    "requirement_files": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {"path": {"type": "str", "required": True}, "content": {"type": "str", "required": True}},
    },
    "constraints": {"type": "list", "elements": "str", "default": []},
    "environment": {"type": "dict", "default": {}, "no_log": True},
    "wheelhouse": {"type": "path"},
}
