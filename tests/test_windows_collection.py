"""Every test module can be imported on Windows, where `signal` and `os` lack the POSIX names.

A skipif mark does not stop a module's import: a POSIX-only name evaluated at import time (a
parametrize list, a decorator's argument, a module constant) raises AttributeError there, and
pytest then stops the whole run at collection ("1 error during collection"), not one test.
This machine cannot import the modules as Windows does, so their import-time code is read.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).parent
# What Windows' signal module has (the CPython docs: signal() takes only SIGABRT, SIGFPE, SIGILL,
# SIGINT, SIGSEGV, SIGTERM and SIGBREAK there; the console events; the module's functions).
WINDOWS_SIGNAL = {
    "SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM", "SIGBREAK", "CTRL_C_EVENT",
    "CTRL_BREAK_EVENT", "SIG_DFL", "SIG_IGN", "NSIG", "Signals", "Handlers", "signal",
    "getsignal", "raise_signal", "set_wakeup_fd", "default_int_handler", "strsignal",
    "valid_signals",
}  # fmt: skip
# POSIX-only names of `os` that a test might reach for (Windows has none of them).
POSIX_OS = {
    "fork", "setsid", "getsid", "getpgid", "setpgid", "killpg", "getuid", "geteuid", "getgid",
    "mkfifo", "O_NONBLOCK", "WNOHANG", "WNOWAIT", "waitid", "P_PID", "sysconf", "pidfd_open",
    "posix_spawn", "POSIX_SPAWN_DUP2", "sched_getaffinity", "getloadavg",
}  # fmt: skip


def _platform_guard(node: ast.stmt) -> bool:
    """A module-level `if sys.platform ...:` or `assert sys.platform ...`: what follows or what
    it holds is not run everywhere (a module-level pytest.skip, a POSIX-only branch)."""
    test = node.test if isinstance(node, (ast.If, ast.Assert)) else None
    return test is not None and "sys.platform" in ast.unparse(test)


def _import_time(tree: ast.Module) -> Iterator[ast.AST]:
    """The nodes a module's import evaluates: not function or lambda bodies, and nothing after
    (or inside) a module-level platform guard."""
    todo: list[ast.AST] = []
    for stmt in tree.body:
        if _platform_guard(stmt):
            break
        todo.append(stmt)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            todo += [*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d)]
        elif isinstance(node, ast.Lambda):
            todo += [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
        elif isinstance(node, ast.If) and "sys.platform" in ast.unparse(node.test):
            continue  # a branch taken by platform
        elif isinstance(node, ast.AnnAssign):  # annotations are strings (__future__)
            todo += [node.value] if node.value else []
        else:
            todo += ast.iter_child_nodes(node)


def posix_names_at_import(path: Path, root: Path = TESTS) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in _import_time(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module, name = node.value.id, node.attr
            if (module == "signal" and name not in WINDOWS_SIGNAL) or (
                module == "os" and name in POSIX_OS
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {module}.{name}")
    return found


def test_no_test_module_needs_posix_names_to_be_imported() -> None:
    modules = [p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts]
    assert len(modules) > 50
    found = [hit for path in modules for hit in posix_names_at_import(path)]
    assert not found, (
        "evaluated at import, absent on Windows (skip the module with pytest.skip(..., "
        f"allow_module_level=True) before it, or name the signal inside the test): {found}"
    )


def test_the_check_sees_a_parametrize_list_and_not_a_test_body(tmp_path: Path) -> None:
    """The reader itself: what runs at import is found, what runs in a test or behind a
    platform guard is not."""
    module = tmp_path / "t.py"
    module.write_text(
        "import os, signal, sys, pytest\n"
        "@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL])\n"
        "def test_a(sig, pid=os.getpid()):\n"
        "    os.killpg(1, signal.SIGSTOP)\n"
        "if sys.platform != 'win32':\n"
        "    HUP = signal.SIGHUP\n"
        "if sys.platform == 'win32':\n"
        "    pytest.skip('POSIX', allow_module_level=True)\n"
        "USR = signal.SIGUSR1\n"
    )
    hits = [h.split(": ", 1)[1] for h in posix_names_at_import(module, tmp_path)]
    assert hits == ["signal.SIGKILL"]
