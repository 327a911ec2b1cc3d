"""A code author's requirements: packages from the index, nothing root would build or fetch."""

from __future__ import annotations

import pytest
from ansible_collections.sweep_fleet.wandb.plugins.module_utils import requirements as rules

GOOD = """\
# what uv pip compile --generate-hashes writes
iniconfig==2.0.0 \\
    --hash=sha256:2d91e135bf72d31a410b17c16da610a82cb55f6b0477d1a902134b24a455b8b3 \\
    --hash=sha256:b6a85871a79d2e3b22d2d1b94ac2824226a63c6b741c88f7ae975f18b6778374
    # via -r requirements.in
torch[cuda]>=2.1,<3 ; platform_system == "Linux"  # a comment
numpy (==1.26.4)
Pillow
"""


def test_packages_from_the_index_pass_and_hashes_are_seen():
    assert rules.requirements_problems(GOOD, "requirements.txt") == []
    assert rules.has_hashes(GOOD)
    assert not rules.has_hashes("numpy==1.26.4\n")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("-e .", "option (-e"),
        ("--editable ./pkg", "option (--editable"),
        ("-r other.txt", "option (-r"),
        ("-c constraints.txt", "option (-c"),
        ("--extra-index-url https://evil.example/simple", "option (--extra-index-url"),
        ("--index-url=https://evil.example/simple", "option (--index-url"),
        ("-f https://evil.example/wheels", "option (-f"),
        ("--find-links ./wheels", "option (--find-links"),
        ("--trusted-host evil.example", "option (--trusted-host"),
        ("numpy==1.26 --config-settings x=y", "has the option --config-settings"),
        ("pkg @ https://evil.example/pkg-1.0.tar.gz", "a URL"),
        ("pkg@git+https://evil.example/pkg.git", "a URL"),
        ("git+https://evil.example/pkg.git#egg=pkg", "a URL"),
        ("./vendored/pkg", "a path"),
        ("/srv/wheels/pkg-1.0-py3-none-any.whl", "a path"),
        ("pkg-1.0.tar.gz", "an archive"),
        ("${PKG}", "not a requirement specifier"),
    ],
)
def test_what_would_make_root_build_or_fetch_more_is_refused_by_line(line, why):
    (problem,) = rules.requirements_problems(f"numpy==1.26.4\n{line}\n", "requirements.txt")
    assert problem.startswith("requirements.txt line 2 ")
    assert why in problem and "uv pip compile --generate-hashes" in problem


PYPROJECT = """\
[project]
name = "train"
version = "0.1"
dependencies = [
    "numpy==1.26.4",  # pinned
    'torch>=2.1',
]
"""


@pytest.mark.parametrize("toml", [True, False], ids=["tomllib", "no TOML library (an older host Python)"])
def test_a_pyproject_lists_packages_only(toml, monkeypatch):
    if not toml:
        monkeypatch.setattr(rules, "_toml", lambda _text: None)
    assert rules.pyproject_problems(PYPROJECT, "pyproject.toml") == []
    url = PYPROJECT.replace("'torch>=2.1',", "'torch @ https://evil.example/torch.whl',")
    assert (
        "dependency 'torch @ https://evil.example/torch.whl' is a URL"
        in rules.pyproject_problems(url, "pyproject.toml")[0]
    )
    dynamic = PYPROJECT.replace('version = "0.1"', 'version = "0.1"\ndynamic = ["dependencies"]')
    assert "dynamic dependencies" in rules.pyproject_problems(dynamic, "pyproject.toml")[0]
    sources = PYPROJECT + '\n[tool.uv.sources]\nnumpy = { git = "https://evil.example/numpy" }\n'
    assert "[tool.uv.sources]" in rules.pyproject_problems(sources, "pyproject.toml")[0]


def test_the_files_looked_for_follow_wandb_code_requirements():
    """One rule for the role (its filter), the preflight and the desired state's digest."""
    assert rules.candidates("auto") == ["requirements.txt", "pyproject.toml"]
    assert rules.candidates("none") == []
    assert rules.candidates("deps/prod.txt") == ["deps/prod.txt"]
