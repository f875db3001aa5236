"""pyright (basic mode) reports no error on the packages: on the paths of pyproject.toml's
[tool.pyright], and on the installed layout, where ``worldmodels.envs`` and ``worldmodels.agents``
resolve so that the types flowing between the three folders are checked too."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

REPO = Path(__file__).resolve().parents[1]
# the folders that install under the worldmodels namespace (pyproject.toml package-dir)
MAPPED = {"envs": "envs", "agents": "agents"}


def _pyright_command() -> list[str]:
    """The pyright command line: the console script, else the pip wrapper's module; skip when neither runs."""
    cmd = ["pyright"] if shutil.which("pyright") is not None else [sys.executable, "-m", "pyright"]
    try:
        r = subprocess.run([*cmd, "--version"], cwd=REPO, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"pyright cannot run here ({e}); pip install -e '.[test]' and a Node.js runtime are needed")
    if r.returncode != 0:
        pytest.skip("pyright cannot run here (pip install -e '.[test]'; the pip wrapper needs Node.js "
                    f"or network access to fetch it): {(r.stdout + r.stderr).strip()[-300:]}")
    return cmd


def _errors(cmd: list[str], cwd: Path) -> list[str]:
    """Run pyright with the configuration found in ``cwd``; its errors as ``file:line: [rule] message``."""
    r = subprocess.run([*cmd, "--outputjson"], cwd=cwd, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no JSON report (exit {r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")
    assert report["summary"]["filesAnalyzed"] > 50, report["summary"]  # the packages, not an empty match
    return [f"{d['file']}:{d['range']['start']['line'] + 1}: [{d.get('rule', '')}] {d['message'].splitlines()[0]}"
            for d in report["generalDiagnostics"] if d["severity"] == "error"]


def test_pyright_is_clean():
    cmd = _pyright_command()
    errors = _errors(cmd, REPO)  # no paths given: pyright checks the `include` list of pyproject.toml
    assert not errors, f"{len(errors)} pyright errors:\n" + "\n".join(errors[:80])


def test_pyright_is_clean_on_the_installed_layout(tmp_path):
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)")
    cmd = _pyright_command()
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pyright"]
    # worldmodels/ as the wheel installs it: the package's own entries plus envs/ and agents/,
    # linked (not copied) so that the reported files are the repository's
    pkg = tmp_path / "worldmodels"
    pkg.mkdir()
    try:
        for entry in (REPO / "worldmodels").iterdir():
            if entry.name != "__pycache__":
                (pkg / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        for name, folder in MAPPED.items():
            (pkg / name).symlink_to(REPO / folder, target_is_directory=True)
    except OSError as e:
        pytest.skip(f"symbolic links are not available here: {e}")
    # pyright does not descend into linked folders by itself: name each one
    include = ["worldmodels"] + sorted(f"worldmodels/{p.name}" for p in pkg.iterdir()
                                       if p.is_dir() and p.name != "configs")
    config = {k: v for k, v in settings.items() if k not in ("include", "exclude")}
    config.update(include=include, exclude=["**/__pycache__"])
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(config))
    errors = _errors(cmd, tmp_path)
    assert not errors, f"{len(errors)} pyright errors:\n" + "\n".join(errors[:80])
