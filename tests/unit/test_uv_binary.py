"""The uv_binary module: a pinned hash is required, and a token in the index URL never shows."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sweep_fleet.wandb.plugins.modules import uv_binary


def run(tmp_path, **args) -> tuple[dict, str]:
    out = io.StringIO()
    args = {"version": "0.13.8", "dest": str(tmp_path / "uv"), "timeout": 2, **args}
    with patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        uv_binary.main()
    return json.loads(out.getvalue()), out.getvalue()


def test_a_missing_hash_for_the_hosts_architecture_is_an_error(tmp_path):
    result, _ = run(tmp_path, sha256="")
    assert result["failed"]
    assert "no sha256 pinned for uv 0.13.8 on this host's architecture" in result["msg"]
    assert "wandb_runtime_uv_sha256." in result["msg"]


def test_a_token_in_the_index_url_is_in_no_output(tmp_path):
    url = "https://__token__:t0kenvalue@127.0.0.1:9/simple?key=s3cr3tvalue"
    result, raw = run(tmp_path, sha256="a" * 64, index_url=url)
    assert (
        result["failed"] and "cannot read uv's files from https://***@127.0.0.1:9/simple?***" in result["msg"]
    )
    assert "t0kenvalue" not in raw and "s3cr3tvalue" not in raw
    # A public index stays readable in messages.
    result, _ = run(tmp_path, sha256="a" * 64, index_url="http://127.0.0.1:9/simple")
    assert "http://127.0.0.1:9/simple/uv/" in result["msg"]
