# Copyright: sweep-fleet developers
# Apache License 2.0
"""Render a role's templates and read its files on the controller, then converge them on
the host in one module call (see plugins/modules/files.py)."""

from __future__ import annotations

import os
import platform

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _render(self, source: str, dest: str, task_vars: dict, extra: dict) -> str:
        path = self._find_needle("templates", source)
        text = trust_as_template(self._loader.get_text_file_contents(path))
        searchpath = [*task_vars.get("ansible_search_path", []), self._loader._basedir, os.path.dirname(path)]
        searchpath = [p for base in searchpath for p in (os.path.join(base, "templates"), base)]
        variables = {**task_vars, **extra}
        # What ansible.builtin.template gives a template (ansible_managed: the user's own if set).
        variables.update(
            template_path=source,
            template_fullpath=path,
            template_destpath=dest,
            template_host=platform.node(),
        )
        variables.setdefault("ansible_managed", C.config.get_config_value("DEFAULT_MANAGED_STR"))
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=variables)
        return templar.template(text, escape_backslashes=False) or ""

    def _read(self, source: str) -> str:
        path = self._find_needle("files", source)
        with open(self._loader.get_real_file(path), encoding="utf-8") as handle:
            return handle.read()

    def _files_args(self, args: dict, task_vars: dict) -> dict:
        """The files module's arguments: each expanded, templates rendered, files read."""
        directories = []
        for entry in args.get("directories") or []:
            entry = dict(entry)
            values = entry.pop("each", None)
            if values is None:
                directories.append(entry)
                continue
            for value in values:  # one directory per item: {item} in its path, owner and group
                directories.append(
                    {
                        k: v.replace("{item}", str(value)) if isinstance(v, str) else v
                        for k, v in entry.items()
                    }
                )
        expanded = []
        for entry in args.get("files") or []:
            entry = dict(entry)
            if "each" in entry:  # one file per item: {item} in the path, item in the template
                for value in entry.pop("each"):
                    path = entry["path"].replace("{item}", str(value))
                    expanded.append(
                        {**entry, "path": path, "vars": {**(entry.get("vars") or {}), "item": value}}
                    )
            else:
                expanded.append(entry)
        files, secrets = [], []
        for item in expanded:
            item = dict(item)
            extra = dict(item.pop("vars", None) or {})
            try:
                if "template" in item:
                    item["content"] = self._render(item.pop("template"), item["path"], task_vars, extra)
                elif "src" in item:
                    item["content"] = self._read(item.pop("src"))
            except (AnsibleError, OSError) as err:
                raise AnsibleActionFail(f"{item.get('path')}: {err}") from err
            (secrets if item.pop("secret", False) else files).append(item)
        return {"directories": directories, "files": files, "private_files": secrets}

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        module_args = self._files_args(self._task.args, task_vars)
        result.update(
            self._execute_module(
                module_name="sweep_fleet.wandb.files", module_args=module_args, task_vars=task_vars
            )
        )
        return result
