# Copyright: sweep-fleet developers
# Apache License 2.0
"""The runtime module, with the wheelhouse made and uv read on the controller, and each sent
only to a host whose copy differs (see plugins/modules/runtime.py)."""

from __future__ import annotations

import hashlib
import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.sweep_fleet.wandb.plugins.action.wheelhouse import ActionModule as WheelhouseAction
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.venv import read_requirements_file


def _requirement_files(candidates: list) -> list[dict]:
    """The first of the files on the controller that exists, with its text (none: [])."""
    for candidate in candidates or []:
        path = str(candidate)
        if not os.path.lexists(path):
            continue
        try:
            text = read_requirements_file(path)
        except OSError as err:
            raise AnsibleActionFail(
                f"code_requirements: cannot read {path} on the controller (a link is refused): {err.strerror}"
            ) from err
        except ValueError as err:
            raise AnsibleActionFail(f"code_requirements: {err}") from err
        return [{"path": path, "content": text}]
    return []


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class ActionModule(WheelhouseAction):
    # A host whose copies are current is sent nothing: no temporary directory is made unless
    # one is (see below), which saves two commands per host.
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(WheelhouseAction, self).run(tmp, task_vars)
        args = dict(self._task.args)
        send_first = boolean(args.pop("send_first", False), strict=False)
        sources = {}  # dest on the host: the file on the controller
        copies = []
        wheelhouse = args.pop("wheelhouse", None)
        if wheelhouse:
            archive, target = self._build(wheelhouse, task_vars)
            sources[str(wheelhouse["dest"])] = str(archive)
            copies.append({"dest": str(wheelhouse["dest"]), "mode": "0600"})
            result["platform"] = target.key
        uv_copy = args.pop("uv_copy", None)
        if uv_copy:
            dest = str(uv_copy.get("dest") or "/usr/local/bin/uv")
            try:
                sources[dest] = self._loader.get_real_file(self._find_needle("files", str(uv_copy["src"])))
            except (AnsibleError, KeyError) as err:
                raise AnsibleActionFail(f"uv_copy: cannot find uv on the controller: {err}") from err
            copies.append({"dest": dest, "mode": "0755"})
        try:
            for item in copies:
                item["sha256"] = _sha256(sources[item["dest"]])
        except OSError as err:
            raise AnsibleActionFail(f"cannot read {err.filename} on the controller: {err.strerror}") from err
        args["copies"] = copies
        if "code_requirements" in args:
            args["requirement_files"] = _requirement_files(args.pop("code_requirements"))

        def call() -> dict:
            return self._execute_module("sweep_fleet.wandb.runtime", module_args=args, task_vars=task_vars)

        try:
            if send_first and copies and not self._task.check_mode:
                # A host likely to lack them (see send_first) is sent every file with the first
                # call; the host still compares each and keeps its own copy where it is the same.
                sent = [item["dest"] for item in copies]
                self._send(copies, sources, sent)
                done = call()
            else:
                done = call()
                sent = done.get("needs_staged") or []
                if sent and not done.get("failed"):
                    # Only the files this host lacks are sent; then it converges with them.
                    self._send(copies, sources, sent)
                    done = call()
            if done.get("needs_staged") and not done.get("failed"):
                raise AnsibleActionFail(
                    f"the host did not take the files sent to it: {', '.join(done['needs_staged'])}"
                )
            if sent:
                done["sent"] = sent
        finally:
            # The temporary directory, when one was made (files sent, or no pipelining).
            self._remove_tmp_path(self._connection._shell.tmpdir)
        result.update(done)
        return result

    def _send(self, copies: list[dict], sources: dict, dests: list[str]) -> None:
        """Send the files of ``dests`` to the host's temporary directory (``staged`` in ``copies``)."""
        remote_tmp = self._connection._shell.tmpdir or self._make_tmp_path()
        staged = []
        for number, item in enumerate(copies):
            if item["dest"] in dests:
                item["staged"] = self._connection._shell.join_path(remote_tmp, f"file{number}")
                self._transfer_file(sources[item["dest"]], item["staged"])
                staged.append(item["staged"])
        self._fixup_perms2([remote_tmp, *staged])
