# Copyright: sweep-fleet developers
# Apache License 2.0
"""What a code author's requirements file may ask root to install: packages from the index,
nothing else.

Root installs the code's ``requirements.txt`` or ``pyproject.toml`` on every host (and the
controller resolves them for the wheelhouse). An option line (``-e .``, ``-r other.txt``,
``--extra-index-url``, ``--find-links``), a URL (``pkg @ https://...``), a path or an archive
would make it fetch or run what the author chooses, so each is refused with the line that
asks for it; ``--hash`` options after a requirement are kept (a file with hashes is then
installed with ``--require-hashes``). A ``pyproject.toml`` may list only such requirements
in ``[project] dependencies``: dynamic dependencies (which only running its build backend
can tell) and ``[tool.uv.sources]`` (git, URL and path sources) are refused. Wheels only
(``--no-build``) is the installers' part.

Used on the controller (the preflight, for local code) and on the hosts (the ``venv``
module, for code checked out there). Standard library only (Python 3.8+).
"""

from __future__ import annotations

import re

# The files wandb_code_requirements=auto looks for in the code, in this order.
AUTO_CANDIDATES = ("requirements.txt", "pyproject.toml")


def candidates(wanted: str) -> list[str]:
    """The code's files (relative to it) of which the first that exists is installed, by
    ``wandb_code_requirements``: ``auto`` (AUTO_CANDIDATES), ``none`` or one file."""
    if wanted == "auto":
        return list(AUTO_CANDIDATES)
    return [] if wanted == "none" else [wanted]


# A requirement specifier: a name, extras, versions, markers; no URL, no path.
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
SPEC_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[A-Za-z0-9._,\s-]*\])?\s*"
    r"(?P<versions>\(?\s*((===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*,?\s*)*\)?)\s*$"
)
HASH_RE = re.compile(r"\s--hash[=\s]\s*[A-Za-z0-9]+:[0-9a-fA-F]+")
HOW = (
    "list packages from the index only, such as torch==2.5.1 (pin them with hashes: "
    "uv pip compile --generate-hashes requirements.in -o requirements.txt)"
)


def specifier_problem(text: str) -> str | None:
    """Why ``text`` is not a plain requirement specifier (None: it is one)."""
    requirement = text.split(";", 1)[0].strip()
    if "@" in requirement or "://" in requirement:
        return "a URL"
    if requirement.startswith((".", "/", "~")) or "/" in requirement or "\\" in requirement:
        return "a path"
    if re.search(r"\.(whl|zip|tar\.gz|tgz|tar\.bz2|tar)$", requirement, re.IGNORECASE):
        return "an archive"
    if not SPEC_RE.match(requirement):
        return "not a requirement specifier"
    return None


def _logical_lines(text: str):
    """(first line number, text) of each line with its continuations joined and comments cut."""
    start, parts = None, []
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if start is None:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        joined = " ".join(part.strip() for part in parts).strip()
        if joined:
            yield start, joined
        start, parts = None, []
    if parts:
        joined = " ".join(part.strip() for part in parts).strip()
        if joined:
            yield start, joined


def requirements_problems(text: str, filename: str) -> list[str]:
    """One message per line of a requirements file that asks for more than a package."""
    problems = []
    for number, line in _logical_lines(text):
        shown = line if len(line) <= 80 else line[:77] + "..."
        if line.startswith("-"):
            option = line.split()[0].split("=", 1)[0]
            problems.append(
                f"{filename} line {number} is an option ({option}: {shown!r}), which would make root "
                f"install or fetch more than packages from the index: {HOW}"
            )
            continue
        requirement = HASH_RE.sub(" ", " " + line).strip()
        if " -" in " " + requirement.split(";", 1)[0] and not requirement.startswith("-"):
            options = [w for w in requirement.split() if w.startswith("-")]
            problems.append(
                f"{filename} line {number} has the option {options[0]} ({shown!r}), which would make root "
                f"install or fetch more than packages from the index: {HOW}"
            )
            continue
        why = specifier_problem(requirement)
        if why:
            problems.append(
                f"{filename} line {number} is {why} ({shown!r}): root would install what it points at; {HOW}"
            )
    return problems


def has_hashes(text: str) -> bool:
    return bool(HASH_RE.search(" " + text.replace("\n", " ")))


def _toml(text: str) -> dict | None:
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        try:
            import tomli as tomllib  # older Pythons, if installed
        except ImportError:
            return None
    try:
        return tomllib.loads(text)
    except ValueError as err:
        return {"__error__": str(err)}


def _dependencies_without_toml(text: str) -> tuple[list[str], bool, bool]:
    """[project] dependencies, whether they are dynamic, whether [tool.uv.sources] exists,
    read with no TOML library (a host's older Python): the strings of the array."""
    section, deps, dynamic, sources, collecting, buffer = "", [], False, False, False, ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not collecting else raw.strip()
        header = re.match(r"^\[([^\]]+)\]$", line)
        if header and not collecting:
            section = header.group(1).strip()
            sources = sources or section in ("tool.uv.sources",) or section.startswith("tool.uv.sources.")
            continue
        if section == "project" and not collecting:
            if re.match(r"^dynamic\s*=", line) and "dependencies" in line:
                dynamic = True
            if re.match(r"^dependencies\s*=", line):
                collecting, buffer = True, line.split("=", 1)[1]
                if "]" in buffer:
                    collecting = False
                    deps += re.findall(r"\"([^\"]*)\"|'([^']*)'", buffer)
                continue
        elif section == "tool.uv" and re.match(r"^sources\s*=", line):
            sources = True
        if collecting:
            buffer += " " + line
            if "]" in line:
                collecting = False
                deps += re.findall(r"\"([^\"]*)\"|'([^']*)'", buffer)
    return [a or b for a, b in deps], dynamic, sources


def pyproject_problems(text: str, filename: str) -> list[str]:
    """What in a pyproject.toml's dependencies asks for more than packages from the index."""
    data = _toml(text)
    if data is not None and "__error__" in data:
        return [f"{filename} is not valid TOML: {data['__error__']}"]
    if data is not None:
        project = data.get("project") or {}
        deps = project.get("dependencies") or []
        dynamic = "dependencies" in (project.get("dynamic") or [])
        sources = bool(((data.get("tool") or {}).get("uv") or {}).get("sources"))
    else:
        deps, dynamic, sources = _dependencies_without_toml(text)
    problems = []
    if dynamic:
        problems.append(
            f"{filename} has dynamic dependencies, which only running its build backend (the code "
            f"author's choice, as root) can tell: {HOW}, in [project] dependencies"
        )
    if sources:
        problems.append(
            f"{filename} has [tool.uv.sources] (git, URL or path sources), which would make root install "
            f"what they point at: {HOW}"
        )
    for dep in deps if isinstance(deps, list) else []:
        why = specifier_problem(str(dep))
        if why:
            problems.append(
                f"{filename} dependency {str(dep)!r} is {why}: root would install what it points at; {HOW}"
            )
    return problems


def file_problems(text: str, path: str, label: str | None = None) -> list[str]:
    """The problems of a requirements file or a pyproject.toml (told apart by ``path``),
    named in messages as ``label`` (default: the path)."""
    if path.endswith(".toml"):
        return pyproject_problems(text, label or path)
    return requirements_problems(text, label or path)
