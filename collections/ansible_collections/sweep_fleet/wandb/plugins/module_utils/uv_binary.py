# Copyright: sweep-fleet developers
# Apache License 2.0
"""The code of the uv_binary module (plugins/modules/uv_binary.py), shared with the role modules
that converge several steps in one call."""

from __future__ import annotations

import hashlib
import io
import os
import platform
import re
import stat
import tarfile
import tempfile
import zipfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.pypi_index import (
    IndexError_,
    download,
    project_files,
    redacted,
    secret_parts,
)

ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}
PROXY_NAMES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


def installed_version(module: AnsibleModule, dest: str) -> str:
    if not os.access(dest, os.X_OK):
        return ""
    rc, out, _err = module.run_command([dest, "--version"], check_rc=False)
    parts = out.split()
    return parts[1] if rc == 0 and len(parts) >= 2 else ""


def wheel_pattern(version: str) -> re.Pattern:
    machine = platform.machine().lower()
    arch = ARCHES.get(machine, machine)
    return re.compile(rf"^uv-{re.escape(version)}-py3-none-manylinux[^-]*_{re.escape(arch)}\.whl$")


def find_wheel(module: AnsibleModule) -> tuple[str, str, str]:
    """(file name, URL, sha256) of the wheel for this host, from the index's simple API.

    With a pinned sha256, the wheel is the one with that hash (an architecture may have
    several manylinux wheels); else the first that fits.
    """
    p = module.params
    try:
        files = project_files(p["index_url"], "uv", timeout=p["timeout"])
    except IndexError_ as err:
        module.fail_json(msg=str(err))
    pattern = wheel_pattern(p["version"])
    pinned = p["sha256"].lower()
    for entry in files:
        listed = entry.get("hashes", {}).get("sha256", "")
        if pinned and listed != pinned:
            continue
        if pattern.match(entry.get("filename", "")) and not entry.get("yanked"):
            return entry["filename"], entry["url"], listed
    module.fail_json(
        msg=f"{redacted(p['index_url'])} has no uv {p['version']} wheel for {platform.machine()}"
        + (f" with sha256 {pinned}" if pinned else "")
        + ": check wandb_runtime_uv_sha256, or use wandb_runtime_uv_source: controller"
    )
    raise AssertionError  # fail_json does not return


def from_wheelhouse(module: AnsibleModule) -> tuple[str, bytes]:
    """(file name, content) of this host's uv wheel in the wheelhouse archive."""
    p = module.params
    pattern = wheel_pattern(p["version"])
    try:
        with tarfile.open(p["wheelhouse"]) as archive:
            for member in archive.getmembers():
                if member.isfile() and pattern.match(member.name):
                    return member.name, archive.extractfile(member).read()
    except (OSError, tarfile.TarError) as err:
        module.fail_json(msg=f"cannot read the wheelhouse {p['wheelhouse']}: {err}")
    module.fail_json(msg=f"the wheelhouse {p['wheelhouse']} holds no uv {p['version']} wheel for this host")
    raise AssertionError  # fail_json does not return


def install(module: AnsibleModule, data: bytes, dest: str) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        name = next((n for n in wheel.namelist() if n.endswith(".data/scripts/uv")), None)
        if name is None:
            module.fail_json(msg="the wheel holds no uv binary")
        binary = wheel.read(name)
    directory = os.path.dirname(dest)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".uv-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(binary)
        os.chmod(temp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        os.replace(temp, dest)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def run(module: AnsibleModule) -> dict:
    p = module.params
    # An index URL with a token in it is kept out of every output (the module's arguments too).
    module.no_log_values.update(secret_parts(p["index_url"]))
    if not re.fullmatch(r"[0-9a-fA-F]{64}", p["sha256"] or ""):
        arch = ARCHES.get(platform.machine().lower(), platform.machine().lower())
        module.fail_json(
            msg=f"no sha256 pinned for uv {p['version']} on this host's architecture ({platform.machine()}): "
            f"add wandb_runtime_uv_sha256.{arch}, the sha256 of uv's manylinux wheel for it on the index"
        )
    before = installed_version(module, p["dest"])
    if before == p["version"]:
        return {"changed": False, "version": before}
    for name, value in (p["environment"] or {}).items():
        if name.lower() in PROXY_NAMES:
            os.environ[name] = str(value)
    data = None
    if p["wheelhouse"]:
        if module.check_mode and not os.path.exists(p["wheelhouse"]):
            return {"changed": True, "version": p["version"]}  # the wheelhouse task would have pushed it
        filename, data = from_wheelhouse(module)
        url, listed = None, ""
    elif p["wheel"]:
        filename, url, listed = os.path.basename(p["wheel"]), None, ""
    else:
        filename, url, listed = find_wheel(module)
    expected = (p["sha256"] or listed).lower()
    if not expected:
        module.fail_json(msg=f"no sha256 for {filename}: give sha256")
    if module.check_mode:
        return {"changed": True, "version": p["version"], "wheel": filename}
    try:
        if url:
            data = download(url, expected, timeout=p["timeout"])
        elif data is None:
            with open(p["wheel"], "rb") as handle:
                data = handle.read()
    except (IndexError_, OSError) as err:
        module.fail_json(msg=f"{filename}: {err}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        module.fail_json(msg=f"{filename} has sha256 {actual}, expected {expected}: not installed")
    install(module, data, p["dest"])
    after = installed_version(module, p["dest"])
    if after != p["version"]:
        module.fail_json(msg=f"the installed uv reports version {after!r}, expected {p['version']}")
    return {"changed": True, "version": after, "wheel": filename}


ARGUMENT_SPEC = {
    "version": {"type": "str", "required": True},
    "dest": {"type": "path", "default": "/usr/local/bin/uv"},
    "index_url": {"type": "str", "default": "https://pypi.org/simple"},
    "wheel": {"type": "path"},
    "wheelhouse": {"type": "path"},
    "sha256": {"type": "str", "default": ""},
    "environment": {"type": "dict", "default": {}, "no_log": True},
    "timeout": {"type": "int", "default": 60},
}
MUTUALLY_EXCLUSIVE = [["wheel", "wheelhouse"]]
