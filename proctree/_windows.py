"""Windows: job objects (kill-on-close, no breakaway) through ctypes, console control events.

A child is created suspended (CREATE_SUSPENDED), assigned to a fresh job, then resumed, so it
cannot start anything outside the job. Closing the last job handle - including when the worker
dies - ends every process in the job.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Collection
from ctypes import wintypes

import psutil

from ._identity import ProcId

assert sys.platform == "win32"

JobObjectBasicProcessIdList = 3
JobObjectExtendedLimitInformation = 9
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100
PROCESS_SUSPEND_RESUME = 0x0800
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
CREATE_SUSPENDED = 0x00000004

_k32 = ctypes.WinDLL("kernel32", use_last_error=True)
_ntdll = ctypes.WinDLL("ntdll")


class _IoCounters(ctypes.Structure):
    _fields_ = [
        ("ReadOperationCount", ctypes.c_ulonglong),
        ("WriteOperationCount", ctypes.c_ulonglong),
        ("OtherOperationCount", ctypes.c_ulonglong),
        ("ReadTransferCount", ctypes.c_ulonglong),
        ("WriteTransferCount", ctypes.c_ulonglong),
        ("OtherTransferCount", ctypes.c_ulonglong),
    ]


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


_k32.CreateJobObjectW.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
_k32.CreateJobObjectW.restype = wintypes.HANDLE
_k32.SetInformationJobObject.argtypes = [
    wintypes.HANDLE,
    ctypes.c_int,
    ctypes.c_void_p,
    wintypes.DWORD,
]
_k32.SetInformationJobObject.restype = wintypes.BOOL
_k32.QueryInformationJobObject.argtypes = [
    wintypes.HANDLE,
    ctypes.c_int,
    ctypes.c_void_p,
    wintypes.DWORD,
    ctypes.POINTER(wintypes.DWORD),
]
_k32.QueryInformationJobObject.restype = wintypes.BOOL
_k32.AssignProcessToJobObject.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
_k32.AssignProcessToJobObject.restype = wintypes.BOOL
_k32.TerminateJobObject.argtypes = [wintypes.HANDLE, wintypes.UINT]
_k32.TerminateJobObject.restype = wintypes.BOOL
_k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
_k32.OpenProcess.restype = wintypes.HANDLE
_k32.CloseHandle.argtypes = [wintypes.HANDLE]
_k32.CloseHandle.restype = wintypes.BOOL
_k32.IsProcessInJob.argtypes = [wintypes.HANDLE, wintypes.HANDLE, ctypes.POINTER(wintypes.BOOL)]
_k32.IsProcessInJob.restype = wintypes.BOOL
_ntdll.NtResumeProcess.argtypes = [wintypes.HANDLE]
_ntdll.NtResumeProcess.restype = ctypes.c_long


def _check(ok: object, what: str) -> None:
    if not ok:
        raise ctypes.WinError(ctypes.get_last_error(), what)


class Job:
    """A job object handle: kill-on-close, breakaway not allowed (no BREAKAWAY_OK flags)."""

    def __init__(self) -> None:
        handle = _k32.CreateJobObjectW(None, None)
        _check(handle, "CreateJobObjectW")
        self.handle: int | None = handle
        info = _ExtendedLimits()
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        ok = _k32.SetInformationJobObject(
            handle, JobObjectExtendedLimitInformation, ctypes.byref(info), ctypes.sizeof(info)
        )
        if not ok:
            err = ctypes.get_last_error()
            _k32.CloseHandle(handle)
            raise ctypes.WinError(err, "SetInformationJobObject")

    def __int__(self) -> int:
        return int(self.handle or 0)

    def assign(self, pid: int) -> None:
        access = PROCESS_SET_QUOTA | PROCESS_TERMINATE | PROCESS_SUSPEND_RESUME
        access |= PROCESS_QUERY_LIMITED_INFORMATION
        proc = _k32.OpenProcess(access, False, pid)
        _check(proc, "OpenProcess")
        try:
            _check(_k32.AssignProcessToJobObject(self.handle, proc), "AssignProcessToJobObject")
            # NtResumeProcess resumes the suspended main thread without needing its handle,
            # which subprocess closes.
            status = _ntdll.NtResumeProcess(proc)
            if status < 0:
                raise OSError(f"NtResumeProcess failed: NTSTATUS {status & 0xFFFFFFFF:#x}")
        finally:
            _k32.CloseHandle(proc)

    def contains(self, pid: int) -> bool:
        proc = _k32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not proc:
            return False
        try:
            result = wintypes.BOOL(False)
            return bool(_k32.IsProcessInJob(proc, self.handle, ctypes.byref(result))) and bool(
                result.value
            )
        finally:
            _k32.CloseHandle(proc)

    def pids(self) -> list[int]:
        if not self.handle:
            return []
        capacity = 4096

        # JOBOBJECT_BASIC_PROCESS_ID_LIST: two DWORD counts then ULONG_PTR ids.
        class _List(ctypes.Structure):
            _fields_ = [
                ("NumberOfAssignedProcesses", wintypes.DWORD),
                ("NumberOfProcessIdsInList", wintypes.DWORD),
                ("ProcessIdList", ctypes.c_size_t * capacity),
            ]

        buf = _List()
        ok = _k32.QueryInformationJobObject(
            self.handle, JobObjectBasicProcessIdList, ctypes.byref(buf), ctypes.sizeof(buf), None
        )
        if not ok:
            return []
        return [int(buf.ProcessIdList[i]) for i in range(buf.NumberOfProcessIdsInList)]

    def terminate(self, exit_code: int = 1) -> bool:
        if not self.handle:
            return False
        return bool(_k32.TerminateJobObject(self.handle, exit_code))

    def close(self) -> None:
        if self.handle:
            _k32.CloseHandle(self.handle)
            self.handle = None


def popen_kwargs() -> dict[str, object]:
    flags = subprocess.CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED
    return {"creationflags": flags}


def after_spawn(pid: int) -> Job:
    job = Job()
    try:
        job.assign(pid)
    except BaseException:
        # Never leave a suspended orphan behind: closing the job (if assigned) kills it,
        # otherwise end it directly.
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
        job.close()
        raise
    return job


def send_verified(pid_id: ProcId, sig: int) -> bool:
    proc = pid_id.process()
    if proc is None:
        return False
    try:
        if sig == signal.CTRL_BREAK_EVENT:
            os.kill(pid_id.pid, sig)
        else:
            proc.kill()
        return True
    except (psutil.Error, OSError):
        return False


def soft_signal_group(root: ProcId) -> bool:
    """CTRL_BREAK_EVENT to the root's console process group (only reaches a shared console)."""
    if root.process() is None:
        return False
    try:
        os.kill(root.pid, signal.CTRL_BREAK_EVENT)
        return True
    except OSError:
        return False


def reap_zombies(exclude: Collection[int] = ()) -> list[int]:
    return []
