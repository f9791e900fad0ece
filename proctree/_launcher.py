"""Linux: a tiny native launcher that sets the parent-death signal and execs the command.

Python can set PR_SET_PDEATHSIG in a child only through a preexec_fn, which forbids vfork:
it forks the whole parent and runs Python in the child (5-9 ms on a 60 MB worker). Wrapping
the command in a program that sets it and execs keeps the vfork, at the price of one exec.
util-linux `setpriv --pdeathsig` does that, but it is dynamically linked and loads the locale:
~1.1 ms of CPU per spawn here. The launcher below makes three system calls, has no libc on
x86_64 (an exec of it costs next to nothing), and also closes the race setpriv
leaves open: if the parent died before the prctl took effect, it kills itself.

It is compiled once per machine with the C compiler, if there is one, into the user's cache
directory (atomically, so concurrent first uses are safe). Without a compiler proctree falls
back to setpriv, then to the preexec_fn. PROCTREE_PDEATHSIG_LAUNCHER=setpriv|preexec forces a
fallback (the tests run each path).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

CHOICE_ENV = "PROCTREE_PDEATHSIG_LAUNCHER"
BUILD_TIMEOUT_S = 120.0

# argv: launcher [-s] [-c CELL] PARENT_PID PATH ARGV0 [ARG...]
#   ->  execve(PATH, [ARGV0, ARG...], environ)
# -s: the command is made a child subreaper first (kept across the exec): what its descendants
# orphan is reparented to it, not to an ancestor, so it stays in the command's own tree.
# -c: the launcher makes the cgroup CELL-<its pid> and moves itself into it before the exec,
# so the command never runs a single instruction outside its cell (a move by the parent after
# the spawn leaves an instant to fork in, and blocks the parent: a migration waits for an RCU
# grace period, ~10 ms on a busy machine). The pid in the name keeps two launches given one
# CELL (options used twice) apart. If the cell cannot be made (it exists, no right) or
# entered, the command runs where the launcher is: the parent's other means still hold it.
SOURCE = r"""
#define EXIT_CANNOT_EXEC 127
#define USAGE "usage: leakproof-pdeathsig [-s] [-c CELL] PARENT_PID PATH ARGV0 [ARG...]\n"
#define CELL_MAX 4096
/* The decimal digits of n >= 0 at buf, NUL-terminated; their count. */
static int decimal(char *buf, long n) {
    char digits[24];
    int d = 0, len = 0;
    do {
        digits[d++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    while (d) buf[len++] = digits[--d];
    buf[len] = 0;
    return len;
}
/* PREFIX-PID into buf, or 0 if it does not fit. */
static int cell_name(char *buf, const char *prefix, long pid) {
    long n = 0;
    for (; prefix[n]; n++) {
        if (n >= CELL_MAX - 32) return 0;
        buf[n] = prefix[n];
    }
    buf[n++] = '-';
    decimal(buf + n, pid);
    return 1;
}
#if defined(LEAKPROOF_RAW) && defined(__x86_64__)
#include <asm/unistd.h>
static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
__asm__(".globl _start\n_start:\n xor %rbp,%rbp\n mov %rsp,%rdi\n and $-16,%rsp\n"
        " call launch\n hlt\n");
#define RAW 1
#elif defined(LEAKPROOF_RAW)
#error "no system-call stub for this architecture: build without LEAKPROOF_RAW"
#endif

#ifdef RAW
#define PR_SET_PDEATHSIG 1
#define PR_SET_CHILD_SUBREAPER 36
#define SIGKILL 9
#define AT_FDCWD -100
#define O_WRONLY 01
#define O_DIRECTORY 0200000
#define O_CLOEXEC 02000000
static void say(const char *s) {
    long n = 0;
    while (s[n]) n++;
    sys3(__NR_write, 2, (long)s, n);
}
/* Why an exec failed, in libc's words for the errors an exec gives (Linux's numbers). */
static void say_reason(long err) {
    switch (err) {
    case 2: say("No such file or directory"); return;
    case 7: say("Argument list too long"); return;
    case 8: say("Exec format error"); return;
    case 12: say("Cannot allocate memory"); return;
    case 13: say("Permission denied"); return;
    case 20: say("Not a directory"); return;
    case 26: say("Text file busy"); return;
    case 36: say("File name too long"); return;
    case 40: say("Too many levels of symbolic links"); return;
    }
    char num[24];
    decimal(num, err);
    say("errno ");
    say(num);
}
static int is_flag(const char *a, char f) { return a[0] == '-' && a[1] == f && !a[2]; }
static long parse_pid(const char *s) {
    long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000000) return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}
__attribute__((used, noreturn)) void launch(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    int reaper = argc >= 2 && is_flag(argv[1], 's');
    argv += reaper;
    argc -= reaper;
    const char *cell = 0;
    if (argc >= 3 && is_flag(argv[1], 'c')) {
        cell = argv[2];
        argv += 2;
        argc -= 2;
    }
    long parent = argc >= 4 ? parse_pid(argv[1]) : -1;
    if (parent < 0) {
        say(USAGE);
        sys3(__NR_exit_group, EXIT_CANNOT_EXEC, 0, 0);
    }
    if (reaper && sys3(__NR_prctl, PR_SET_CHILD_SUBREAPER, 1, 0) != 0) {
        say("leakproof-pdeathsig: cannot become a subreaper\n");
        sys3(__NR_exit_group, EXIT_CANNOT_EXEC, 0, 0);
    }
    char path[CELL_MAX];
    if (cell && cell_name(path, cell, sys3(__NR_getpid, 0, 0, 0))
        && sys3(__NR_mkdir, (long)path, 0755, 0) == 0) {
        long dir = sys3(__NR_openat, AT_FDCWD, (long)path, O_DIRECTORY | O_CLOEXEC);
        long procs = dir < 0 ? -1
                   : sys3(__NR_openat, dir, (long)"cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (procs >= 0) {
            sys3(__NR_write, procs, (long)"0", 1); /* "0": the writer itself */
            sys3(__NR_close, procs, 0, 0);
        }
        if (dir >= 0) sys3(__NR_close, dir, 0, 0);
    }
    sys3(__NR_prctl, PR_SET_PDEATHSIG, SIGKILL, 0);
    if (sys3(__NR_getppid, 0, 0, 0) != parent) /* it died before the prctl: do what it would */
        sys3(__NR_kill, sys3(__NR_getpid, 0, 0, 0), SIGKILL, 0);
    long err = -sys3(__NR_execve, (long)argv[2], (long)(argv + 3), (long)envp);
    say("leakproof-pdeathsig: cannot execute ");
    say(argv[2]);
    say(": ");
    say_reason(err);
    say("\n");
    sys3(__NR_exit_group, EXIT_CANNOT_EXEC, 0, 0);
    for (;;) {}
}
#else
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
static int is_flag(const char *a, char f) { return a[0] == '-' && a[1] == f && !a[2]; }
int main(int argc, char **argv) {
    char *end = NULL;
    int reaper = argc >= 2 && is_flag(argv[1], 's');
    argv += reaper;
    argc -= reaper;
    const char *cell = NULL;
    if (argc >= 3 && is_flag(argv[1], 'c')) {
        cell = argv[2];
        argv += 2;
        argc -= 2;
    }
    long parent = argc >= 4 ? strtol(argv[1], &end, 10) : -1;
    if (parent < 0 || end == argv[1] || *end) {
        fputs(USAGE, stderr);
        return EXIT_CANNOT_EXEC;
    }
    if (reaper && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        fputs("leakproof-pdeathsig: cannot become a subreaper\n", stderr);
        return EXIT_CANNOT_EXEC;
    }
    char path[CELL_MAX];
    if (cell && cell_name(path, cell, getpid()) && mkdir(path, 0755) == 0) {
        int dir = open(path, O_DIRECTORY | O_CLOEXEC);
        int procs = dir < 0 ? -1 : openat(dir, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (procs >= 0) {
            (void)!write(procs, "0", 1); /* "0": the writer itself */
            close(procs);
        }
        if (dir >= 0) close(dir);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)parent) kill(getpid(), SIGKILL);
    execv(argv[2], argv + 3);
    fprintf(stderr, "leakproof-pdeathsig: cannot execute %s: %s\n", argv[2], strerror(errno));
    return EXIT_CANNOT_EXEC;
}
#endif
"""

# Flags per kind of build: without libc where a system-call stub exists, else against libc.
RAW_FLAGS = [
    "-DLEAKPROOF_RAW",
    "-static",
    "-nostdlib",
    "-fno-stack-protector",
    "-fno-builtin",
    "-fno-asynchronous-unwind-tables",
]
# Only the stub that is tested here; other machines get the libc build (~0.4 ms an exec).
RAW_MACHINES = {"x86_64", "amd64"}


def cache_dir() -> Path | None:
    try:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except RuntimeError:  # no home directory to be found
        return None
    return Path(base) / "leakproof"


def _compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and (found := shutil.which(name)):
            return found
    return None


def _ours_alone(st: os.stat_result) -> bool:
    if sys.platform == "win32":  # the launcher is Linux's; this tells type checkers
        raise NotImplementedError("POSIX ownership")
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _trusted(path: Path) -> bool:
    """It and its directory ours and writable by nobody else: we run it for every spawn."""
    try:
        st, parent = path.lstat(), path.parent.lstat()
    except OSError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and _ours_alone(st)
        and stat.S_ISDIR(parent.st_mode)
        and _ours_alone(parent)
        and os.access(path, os.X_OK)
    )


def _works(path: Path) -> bool:
    """Run it once on `true`: a launcher that cannot exec must not wrap every spawn."""
    true = shutil.which("true")
    if true is None:
        return False
    try:
        done = subprocess.run(
            [str(path), str(os.getpid()), true, "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _build(cc: str, target: Path, flags: list[str]) -> bool:
    """Compile into a private file next to target, then rename: concurrent builds are safe."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
    except OSError:
        return False
    os.close(fd)
    tmp = Path(tmp_name)
    src = tmp.parent / (tmp.name + ".c")
    try:
        src.write_text(SOURCE)
        done = subprocess.run(
            [cc, "-O2", *flags, "-o", str(tmp), str(src)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=BUILD_TIMEOUT_S,
        )
        tmp.chmod(0o755)
        if done.returncode != 0 or not _works(tmp):
            return False
        os.replace(tmp, target)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        tmp.unlink(missing_ok=True)
        src.unlink(missing_ok=True)


def native_launcher() -> str | None:
    """The built launcher's path (building it on first use), or None if it cannot be had."""
    machine = platform.machine().lower()
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
    folder = cache_dir()
    if folder is None:
        return None
    target = folder / f"pdeathsig-{digest}-{machine}"
    if _trusted(target) and _works(target):
        return str(target)
    cc = _compiler()
    if cc is None:
        return None
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _ours_alone(target.parent.lstat()):
            return None  # others could swap what we build: setpriv instead
    except OSError:
        return None
    attempts = [RAW_FLAGS, []] if machine in RAW_MACHINES else [[]]
    for flags in attempts:
        if _build(cc, target, flags) and _trusted(target):
            return str(target)
    return None
