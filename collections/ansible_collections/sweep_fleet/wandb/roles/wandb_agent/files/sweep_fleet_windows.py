"""What the agent launcher needs on Windows, where there is no cgroup and no process group
signal: a job object that holds the launcher, the agent and everything it starts (closing
it, when the launcher exits for any reason, kills them all, grandchildren holding GPU memory
included), the processes in it with their parents, the process that really runs the agent
(a venv's python.exe only starts the base interpreter), Ctrl-Break to one run's process
group, and links from a working directory to the code that need no privilege.

Installed next to sweep_fleet_agent.py on Windows hosts; standard library (ctypes) only.
"""

from __future__ import annotations

import ctypes
import os
import signal
from ctypes import wintypes

JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
JOB_OBJECT_BASIC_PROCESS_ID_LIST = 3
TH32CS_SNAPPROCESS = 0x2
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value
PROCESS_TERMINATE = 0x0001
ERROR_MORE_DATA = 234


class _IoCounters(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_ulonglong)
        for name in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
        )
    ]  # fmt: skip


class _BasicLimits(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", wintypes.DWORD),
        ("SchedulingClass", wintypes.DWORD),
    ]


class _ExtendedLimits(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


def _process_ids(size: int):
    """JOBOBJECT_BASIC_PROCESS_ID_LIST with room for ``size`` ids."""

    class _ProcessIds(ctypes.Structure):
        _fields_ = [
            ("NumberOfAssignedProcesses", wintypes.DWORD),
            ("NumberOfProcessIdsInList", wintypes.DWORD),
            ("ProcessIdList", ctypes.c_size_t * size),
        ]

    return _ProcessIds()


class _ProcessEntry(ctypes.Structure):
    _fields_ = [
        ("dwSize", wintypes.DWORD),
        ("cntUsage", wintypes.DWORD),
        ("th32ProcessID", wintypes.DWORD),
        ("th32DefaultHeapID", ctypes.c_size_t),
        ("th32ModuleID", wintypes.DWORD),
        ("cntThreads", wintypes.DWORD),
        ("th32ParentProcessID", wintypes.DWORD),
        ("pcPriClassBase", ctypes.c_long),
        ("dwFlags", wintypes.DWORD),
        ("szExeFile", ctypes.c_wchar * 260),
    ]


def _kernel32():
    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.CreateJobObjectW.restype = wintypes.HANDLE
    k.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
    k.SetInformationJobObject.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
    k.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
    k.QueryInformationJobObject.argtypes = [
        wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD, ctypes.c_void_p,
    ]  # fmt: skip
    k.TerminateJobObject.argtypes = [wintypes.HANDLE, wintypes.UINT]
    k.CloseHandle.argtypes = [wintypes.HANDLE]
    k.GetCurrentProcess.restype = wintypes.HANDLE
    k.OpenProcess.restype = wintypes.HANDLE
    k.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    k.TerminateProcess.argtypes = [wintypes.HANDLE, wintypes.UINT]
    k.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    k.CreateToolhelp32Snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
    k.Process32FirstW.argtypes = [wintypes.HANDLE, ctypes.POINTER(_ProcessEntry)]
    k.Process32NextW.argtypes = [wintypes.HANDLE, ctypes.POINTER(_ProcessEntry)]
    return k


def _check(ok, what: str) -> None:
    if not ok:
        raise ctypes.WinError(ctypes.get_last_error(), what)


class Job:
    """A kill-on-close job object: the Windows counterpart of the unit's cgroup."""

    def __init__(self) -> None:
        self._k = _kernel32()
        self.handle = self._k.CreateJobObjectW(None, None)
        _check(self.handle, "CreateJobObject")
        limits = _ExtendedLimits()
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        size = ctypes.sizeof(limits)
        ok = self._k.SetInformationJobObject(
            self.handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION, ctypes.byref(limits), size
        )
        _check(ok, "SetInformationJobObject")

    def add_current(self) -> None:
        """Put this process (the launcher) in the job: everything it starts from then on is
        in it from its first instruction, so nothing is ever outside it."""
        ok = self._k.AssignProcessToJobObject(self.handle, self._k.GetCurrentProcess())
        _check(ok, "AssignProcessToJobObject")

    def pids(self) -> list[int]:
        """The processes in the job (the list grows with the job: asked again, larger)."""
        size = 256
        while True:
            ids = _process_ids(size)
            ok = self._k.QueryInformationJobObject(
                self.handle, JOB_OBJECT_BASIC_PROCESS_ID_LIST, ctypes.byref(ids), ctypes.sizeof(ids), None
            )
            if ok and ids.NumberOfProcessIdsInList >= ids.NumberOfAssignedProcesses:
                return [int(ids.ProcessIdList[i]) for i in range(ids.NumberOfProcessIdsInList)]
            if not ok and ctypes.get_last_error() != ERROR_MORE_DATA:
                _check(ok, "QueryInformationJobObject")
            size = max(size * 2, int(ids.NumberOfAssignedProcesses) + 64)

    def kill_others(self) -> None:
        """Kill every process in the job but this one (the launcher)."""
        for pid in self.pids():
            if pid != os.getpid():
                kill(pid)


def processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, executable name)."""
    k = _kernel32()
    snapshot = k.CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0)
    if snapshot in (None, INVALID_HANDLE_VALUE):
        raise ctypes.WinError(ctypes.get_last_error(), "CreateToolhelp32Snapshot")
    found = {}
    try:
        entry = _ProcessEntry()
        entry.dwSize = ctypes.sizeof(entry)
        more = k.Process32FirstW(snapshot, ctypes.byref(entry))
        while more:
            found[int(entry.th32ProcessID)] = (int(entry.th32ParentProcessID), entry.szExeFile)
            more = k.Process32NextW(snapshot, ctypes.byref(entry))
    finally:
        k.CloseHandle(snapshot)
    return found


def kill(pid: int) -> None:
    """End one process at once (TerminateProcess); one that is gone already is no error."""
    k = _kernel32()
    handle = k.OpenProcess(PROCESS_TERMINATE, False, pid)
    if handle:
        try:
            k.TerminateProcess(handle, 1)
        finally:
            k.CloseHandle(handle)


def real_agent(started: int, in_job: list[int], table: dict[int, tuple[int, str]]) -> int | None:
    """The process that runs ``wandb agent`` when the one the launcher started is a venv's
    python.exe: that is a redirector that starts the base interpreter and waits for it
    (Python's venv docs, "Changed in version 3.7.2"). Its one child, or None while it has
    none yet."""
    children = [p for p in in_job if p in table and table[p][0] == started]
    if not children:
        return None
    return children[0] if len(children) == 1 else started


def runs_of(agent: int, in_job: list[int], table: dict[int, tuple[int, str]]) -> list[int]:
    """The agent's runs: its children in the job, other than wandb-core (its own helper).

    wandb starts each run in a process group of its own, so Ctrl-Break reaches one run.
    """
    return sorted(
        pid
        for pid in in_job
        if pid in table and table[pid][0] == agent and not table[pid][1].lower().startswith("wandb-core")
    )


def junction(target: str, link: str) -> None:
    """A directory junction: a link to a directory that needs no privilege to make."""
    import _winapi  # CPython's own, Windows only

    _winapi.CreateJunction(target, link)


def ctrl_break(pid: int) -> None:
    """Ctrl-Break to the process group ``pid`` leads (Python raises SIGBREAK there)."""
    os.kill(pid, signal.CTRL_BREAK_EVENT)
