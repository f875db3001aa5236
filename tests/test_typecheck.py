"""pyright (basic mode, configured in pyproject.toml [tool.pyright]) reports no error on the packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pyright_command() -> list[str]:
    """The pyright command line: the console script, else the pip wrapper's module; skip when neither runs."""
    if shutil.which("pyright") is not None:
        cmd = ["pyright"]
    else:
        cmd = [sys.executable, "-m", "pyright"]
    try:
        r = subprocess.run([*cmd, "--version"], cwd=REPO, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"pyright cannot run here ({e}); pip install -e '.[lint]' and a Node.js runtime are needed")
    if r.returncode != 0:
        pytest.skip("pyright cannot run here (pip install -e '.[lint]'; the pip wrapper needs Node.js "
                    f"or network access to fetch it): {(r.stdout + r.stderr).strip()[-300:]}")
    return cmd


def test_pyright_is_clean():
    cmd = _pyright_command()
    # no paths on the command line: pyright checks the `include` list of pyproject.toml
    r = subprocess.run([*cmd, "--outputjson"], cwd=REPO, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no JSON report (exit {r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")
    assert report["summary"]["filesAnalyzed"] > 0, report["summary"]
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    lines = [f"{Path(d['file']).relative_to(REPO)}:{d['range']['start']['line'] + 1}: "
             f"[{d.get('rule', '')}] {d['message'].splitlines()[0]}" for d in errors]
    assert not errors, f"{len(errors)} pyright errors:\n" + "\n".join(lines[:80])
