"""Every tox env that runs the harness (or real claude-mem workers) lets it end its run on Ctrl-C.

tox sends SIGINT, then SIGTERM after `interrupt_timeout` (0.3 s) and SIGKILL 0.2 s later, unless
`suicide_timeout` holds it back. The harness needs seconds to stop a worker and end what ignores
SIGTERM; SIGKILLed, it leaves them running. Measured: Ctrl-C on `python3 ci/tox.py -e claude-mem
-- --no-reference --scenarios ignore-eof+ignore-sigterm` left both 13.25.3 observers running.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

TOX_INI = Path(__file__).resolve().parents[2] / "tox.ini"
RUNS = re.compile(r"python -m harness (soak|repro|compare|bench)\b|posargs:tests/claudemem")


def test_envs_that_run_workers_wait_for_the_harness_on_ctrl_c() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(TOX_INI, encoding="utf-8")
    checked = []
    for section in tox.sections():
        if not section.startswith("testenv:"):
            continue
        env = tox[section]
        if not RUNS.search(env.get("commands", "")):
            continue
        checked.append(section)
        assert float(env.get("suicide_timeout", "0")) >= 60, section
    assert {"testenv:soak", "testenv:claude-mem", "testenv:claude-mem-tests"} <= set(checked)
