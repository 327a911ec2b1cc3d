# Copyright: sweep-fleet developers
# Apache License 2.0
"""A package index's simple API in its JSON form (PEP 691), as PyPI and mirrors such as
devpi serve it: the files of a project, and a download checked against its sha256.

Used on the hosts (uv_binary) and on the controller (the wheelhouse)."""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urljoin

from ansible.module_utils.urls import open_url

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def redacted(url: str) -> str:
    """A URL fit for a message: user info (a token) and query string replaced by ***."""
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@", r"\1***@", str(url))
    return re.sub(r"\?.*$", "?***", text)


def secret_parts(url: str) -> list[str]:
    """What of a URL a module must keep out of its output (module.no_log_values): the URL
    and its user info and query string, when it has them; nothing for a URL without."""
    text = str(url)
    if redacted(text) == text:
        return []
    parts = [text]
    userinfo = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/@\s]*)@", text)
    if userinfo:
        parts.append(userinfo.group(1))
    if "?" in text:
        parts.append(text.split("?", 1)[1])
    return [part for part in parts if len(part) >= 3]


class IndexError_(Exception):
    """The index could not answer, or answered with something we refuse."""


def canonical_name(name: str) -> str:
    """PEP 503's normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_files(index_url: str, project: str, timeout: float = 60) -> list[dict]:
    """The project's files as the index lists them, each URL made absolute (PEP 691 lets
    an index give them relative to the project's page)."""
    page = f"{index_url.rstrip('/')}/{canonical_name(project)}/"
    try:
        response = open_url(page, headers={"Accept": SIMPLE_JSON}, timeout=timeout)
        listed = json.loads(response.read())["files"]
    except Exception as err:
        raise IndexError_(f"cannot read {project}'s files from {redacted(page)}: {err}") from err
    return [dict(entry, url=urljoin(page, entry["url"])) for entry in listed]


def download(url: str, sha256: str, timeout: float = 300) -> bytes:
    """The file at ``url``, refused unless its sha256 is ``sha256``."""
    try:
        data = open_url(url, timeout=timeout).read()
    except Exception as err:
        raise IndexError_(f"cannot download {redacted(url)}: {err}") from err
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.lower():
        raise IndexError_(f"{url.rsplit('/', 1)[-1]} has sha256 {actual}, expected {sha256}: refused")
    return data
