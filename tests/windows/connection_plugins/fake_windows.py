"""A Windows host that is not there: the tests' stand-in for WinRM (no Windows host here).

Ansible prepares every PowerShell module call exactly as for a real Windows host (module
lookup, argument templating, the exec wrapper's manifest); this connection reads the
manifest instead of sending it, checks the module's arguments against the module's own
documentation (unknown options, types, choices, required ones: what Ansible.Basic refuses
on the host), records the call and answers as a Windows 11 host would in check mode.
Modules that do not support check mode are skipped, as on a real host.

The host has the paths and services named in the JSON file SWEEP_FLEET_FAKE_WINDOWS_STATE
({"paths": [...], "services": {"name": "started|stopped"}}; without it, a fresh host:
Python installed, nothing of sweep-fleet). Optionally, "files" ({path: text}) holds files'
contents, which win_copy compares by checksum as the module does; "registry"
({"KEY\\NAME": data}) the values win_regedit compares; "service_settings" ({name: {option:
value}}) what win_service compares for a service defined earlier; "gpus" the GPUs that
``nvidia-smi.exe -q -x`` reports (as tests/programs/nvidia_smi.py takes them; a fresh host
has the three of GPUS; [] answers as a PC without NVIDIA's driver). What is not named there
differs, and is changed. Check mode creates nothing, so they stay as they
are for the whole run, and the modules' own refusals are answered from them: win_acl and
win_acl_inheritance on a missing path, a grant to the virtual account of a missing service,
win_service on a missing service without ``path``, win_copy from a missing remote ``src``.

The record (one JSON object per call: module, args, check_mode) goes to the file named by
SWEEP_FLEET_FAKE_WINDOWS_LOG. What a module would do on the host is not run: this proves
that every task, variable and branch of the Windows path is evaluated and well-formed, and
which calls would reach a fresh or a deployed host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.connection import ConnectionBase
from ansible.plugins.loader import module_loader

DOCUMENTATION = """
name: fake_windows
short_description: A Windows host that is not there (sweep-fleet's tests only)
description:
  - Answers PowerShell module calls as a fresh Windows host in check mode would, after
    checking their arguments against the modules' documentation.
author: sweep-fleet developers
options: {}
"""

SEPARATOR = b"\n\0\0\0\0\n"
TYPES = {"sid": "str", "path": "path", "raw": "raw"}

FACTS = {
    "os_family": "Windows",
    "system": "Win32NT",
    "distribution": "Microsoft Windows 11 Pro",
    "distribution_version": "10.0.22631.0",
    "distribution_major_version": "10",
    "architecture": "64-bit",
    "architecture2": "x86_64",
    "machine_id": "S-1-5-21-1-2-3",
    "hostname": "GPU-WORKSTATION",
    "nodename": "gpu-workstation",
    "powershell_version": 5,
}
# What the wheelhouse's probe prints on a Windows host with Python 3.12 installed.
PROBE = {"system": "Windows", "machine": "AMD64", "python": "3.12", "libc": ["", ""]}
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "programs"))
import nvidia_smi  # noqa: E402  (the tests' stand-in nvidia-smi, whose report this host gives)

GPUS = [
    {"uuid": f"GPU-{n}e4a7c21-5d3b-4f10-9c6e-0a1b2c3d4e5{n}", "bus_id": f"00000000:0{n + 1}:00.0",
     "minor": -1, "memory_total": 24576, "util": 0}
    for n in range(3)
]  # fmt: skip
FRESH = {"paths": ["C:\\ProgramData", r"C:\Program Files\Python312\python.exe"], "services": {}, "gpus": GPUS}


def host_state() -> dict:
    """The paths (case-insensitive, as NTFS) and services the host has."""
    path = os.environ.get("SWEEP_FLEET_FAKE_WINDOWS_STATE")
    state = json.loads(Path(path).read_text()) if path else FRESH
    paths = {_norm(p) for p in state.get("paths", [])}
    files = {_norm(k): v for k, v in state.get("files", {}).items()}
    services = {k.lower(): v for k, v in state.get("services", {}).items()}
    python = str(state.get("python") or PROBE["python"])  # the installed Python's version
    registry = {_norm(k): v for k, v in state.get("registry", {}).items()}
    settings = {k.lower(): v for k, v in state.get("service_settings", {}).items()}
    return {
        "paths": paths | set(files), "files": files, "services": services, "python": python,
        "registry": registry, "service_settings": settings, "gpus": state.get("gpus", GPUS),
    }  # fmt: skip


def _norm(path: str) -> str:
    return str(path).replace("/", "\\").rstrip("\\").lower()


def refusal(module: str, args: dict, state: dict) -> str | None:
    """What the module itself would fail with on this host (its own messages), or None."""
    short = module.rsplit(".", 1)[-1]
    paths, services = state["paths"], state["services"]
    if short in ("win_acl", "win_acl_inheritance") and _norm(args["path"]) not in paths:
        return f"{args['path']} file or directory does not exist on the host"
    user = str(args.get("user") or "")
    account = user.split("\\", 1)[1].lower() if user.lower().startswith("nt service\\") else None
    if short == "win_acl" and account is not None and account not in services:
        return f"{user} is not a valid user or group on the host machine or domain"
    creates = args.get("state") == "absent" or args.get("path")
    if short == "win_service" and not creates and args["name"].lower() not in services:
        return f"Service '{args['name']}' is not installed, need to set 'path' to create a new service"
    if short == "win_copy" and args.get("_copy_mode") == "remote" and _norm(args["src"]) not in paths:
        return f"Cannot copy src file: '{args['src']}' as it does not exist"
    return None


def _spec(options: dict) -> dict:
    spec = {}
    for name, doc in (options or {}).items():
        entry = {"type": TYPES.get(doc.get("type", "str"), doc.get("type", "str"))}
        for key in ("choices", "required", "aliases", "elements", "no_log"):
            if key in doc:
                entry[key] = doc[key]
        if entry.get("elements") == "sid":
            entry["elements"] = "str"
        if "options" in doc:
            entry["options"] = _spec(doc["options"])
        spec[name] = entry
    return spec


def _source(name: str) -> Path:
    found = module_loader.find_plugin_with_context(name, mod_type=".ps1")
    if not found.resolved:
        raise ValueError(f"no such PowerShell module {name}")
    return Path(found.plugin_resolved_path)


def module_doc(name: str) -> dict:
    """The DOCUMENTATION of a module (next to its .ps1: in a .py, or a .yml sidecar)."""
    source = _source(name)
    if source.with_suffix(".yml").exists():
        return yaml.safe_load(source.with_suffix(".yml").read_text(encoding="utf-8")).get("DOCUMENTATION", {})
    text = source.with_suffix(".py").read_text(encoding="utf-8")
    match = re.search(r"DOCUMENTATION\s*=\s*r?(['\"]{3})(.*?)\1", text, re.S)
    return yaml.safe_load(match.group(2)) if match else {}


def supports_check_mode(name: str) -> bool:
    """What the module's PowerShell says (Ansible.Basic's spec, or the legacy Parse-Args)."""
    text = _source(name).read_text(encoding="utf-8-sig")
    return bool(re.search(r"supports_check_mode\s*=?\s*\$true", text))


class Connection(ConnectionBase):
    transport = "fake_windows"
    module_implementation_preferences = (".ps1", ".exe", "")
    allow_executable = False
    has_pipelining = True
    allow_extras = True

    def __init__(self, *args, **kwargs):
        self._shell_type = "powershell"
        super().__init__(*args, **kwargs)
        self.always_pipeline_modules = True
        self.has_native_async = True

    def _connect(self):
        self._connected = True
        return self

    def close(self):
        self._connected = False

    def put_file(self, in_path, out_path):
        self._record({"module": "put_file", "args": {"dest": out_path}, "check_mode": True})

    def fetch_file(self, in_path, out_path):
        raise NotImplementedError("the fake Windows host has no files to fetch")

    def _record(self, entry: dict) -> None:
        path = os.environ.get("SWEEP_FLEET_FAKE_WINDOWS_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, sort_keys=True, default=str) + "\n")

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        parts = (in_data or b"").split(SEPARATOR)
        if len(parts) < 2:
            return 0, b"", b""  # removing a temporary directory and such
        manifest = json.loads(parts[1])
        actions = {action["name"]: action["params"] for action in manifest.get("actions", [])}
        if "powershell_mkdtemp.ps1" in actions:
            params = actions["powershell_mkdtemp.ps1"]
            return 0, f"C:\\Windows\\Temp\\{params['Name']}\r\n".encode(), b""
        if "module_wrapper.ps1" not in actions:
            return 0, b"{}", b""
        params = actions["module_wrapper.ps1"]
        # ansible_collections.NS.COLL.plugins.modules.NAME.ps1 -> NS.COLL.NAME
        module = re.sub(r"\.ps1$", "", params["Script"])
        module = re.sub(r"^ansible_collections\.(\w+\.\w+)\.plugins\.modules\.", r"\1.", module)
        args = next(v["Value"] for v in params.get("Variables", []) if v["Name"] == "complex_args")
        result = self._answer(module, args)
        return 0, json.dumps(result).encode(), b""

    def _answer(self, module: str, args: dict) -> dict:
        check_mode = bool(args.get("_ansible_check_mode"))
        own = {k: v for k, v in args.items() if not k.startswith("_ansible_")}
        entry = {"module": module, "args": own, "check_mode": check_mode}
        if own.get("_copy_mode") == "query":  # what win_copy would send (a controller file)
            entry["contents"] = {
                f["dest"]: Path(f["src"]).read_text(errors="replace")
                for f in own.get("files", [])
                if Path(f["src"]).stat().st_size < 65536
            }
        self._record(entry)
        doc = module_doc(module)
        # win_copy's private query mode is not documented; setup takes any option (its own
        # code adds what the gather_facts action passes).
        if "_copy_mode" not in own and not module.endswith(".setup"):
            result = ArgumentSpecValidator(_spec(doc.get("options"))).validate(own)
            if result.error_messages:
                problems = "; ".join(result.error_messages)
                self._record({"module": module, "refused": problems})
                return {"failed": True, "msg": f"{module} refuses its arguments: {problems}"}
        if check_mode and not supports_check_mode(module):
            return {"skipped": True, "changed": False, "msg": "remote module does not support check mode"}
        state = host_state()
        refused = refusal(module, own, state)
        if refused:
            self._record({"module": module, "failed": refused})
            return {"failed": True, "msg": refused}
        short = module.rsplit(".", 1)[-1]
        if short == "setup":
            return {"ansible_facts": {f"ansible_{k}": v for k, v in FACTS.items()}, "changed": False}
        if short == "slurp":
            path = _norm(own["src"])
            if path not in state["paths"]:
                return {"failed": True, "msg": f"Path {own['src']} is not found"}
            text = state["files"].get(path, "").encode()
            return {"changed": False, "content": base64.b64encode(text).decode(), "encoding": "base64"}
        if short == "win_stat":
            return {"changed": False, "stat": {"exists": _norm(own["path"]) in state["paths"]}}
        if short == "win_service_info":
            pattern = re.compile(re.escape(str(own.get("name") or "*")).replace(r"\*", ".*") + "$", re.I)
            found = [
                {"name": name, "state": status, "start_mode": "delayed"}
                for name, status in sorted(state["services"].items())
                if pattern.match(name)
            ]
            return {"changed": False, "exists": bool(found), "services": found}
        if short == "win_service":
            known = own["name"].lower() in state["services"]
            if known and not own.get("state"):  # a definition: changed when it differs
                wanted = {k: v for k, v in own.items() if v is not None and k != "name"}
                return {
                    "changed": state["service_settings"].get(own["name"].lower()) != wanted,
                    "exists": True,
                }
            return {"changed": own.get("state") != "absent" or known, "exists": known}
        if short == "win_regedit" and own.get("state", "present") == "present":
            key = _norm(f"{own['path']}\\{own.get('name') or ''}")
            return {"changed": state["registry"].get(key, object()) != own.get("data")}
        if short == "win_copy" and own.get("_copy_mode") == "remote":
            src, dest = _norm(own["src"]), _norm(own["dest"])
            same = dest in state["paths"] and state["files"].get(src) == state["files"].get(dest)
            return {"changed": not same}
        if short == "win_file" and own.get("state") in ("directory", "absent"):
            there = _norm(own["path"]) in state["paths"]
            return {"changed": there == (own["state"] == "absent")}
        if short == "win_find":
            return {"changed": False, "examined": 0, "matched": 0, "files": []}
        if short == "win_command":
            argv = own.get("argv") or []
            if argv[:1] == ["nvidia-smi.exe"]:
                if not state["gpus"]:
                    return {"failed": True, "rc": 2, "msg": "The system cannot find the file specified"}
                report = nvidia_smi.report(state["gpus"], [])
                return {"changed": True, "rc": 0, "stdout": report.replace("\n", "\r\n"), "stderr": ""}
            if len(argv) == 3 and argv[1] == "-c" and _norm(argv[0]) not in state["paths"]:
                return {"failed": True, "rc": 2, "msg": "The system cannot find the file specified"}
            if len(argv) == 3 and argv[1] == "-c" and argv[2].startswith("import sys; print('%d.%d'"):
                return {"changed": True, "rc": 0, "stdout": state["python"] + "\r\n", "stderr": ""}
            if len(argv) == 3 and argv[1] == "-c" and "platform.machine()" in argv[2]:
                return {"changed": False, "rc": 0, "stdout": json.dumps(PROBE) + "\r\n", "stderr": ""}
            return {"changed": True, "rc": 0, "stdout": "", "stderr": ""}
        if short == "win_copy" and own.get("_copy_mode") == "query":
            files, directories = own.get("files", []), own.get("directories", [])
            # The query names the destination directory, each file its name in it; a file whose
            # checksum the host's copy has is not sent.
            have = {path: hashlib.sha1(text.encode()).hexdigest() for path, text in state["files"].items()}
            where = _norm(own.get("dest", ""))
            files = [
                f
                for f in files
                if f.get("checksum") is None or have.get(f"{where}\\{_norm(f['dest'])}") != f["checksum"]
            ]
            return {"changed": False, "files": files, "directories": directories, "symlinks": []}
        return {"changed": True}
