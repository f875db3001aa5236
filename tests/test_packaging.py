"""The distribution owns one import name, ``worldmodels``: built as a wheel and installed beside a
distribution that provides top-level ``envs`` and ``agents``, both import, and a preset runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"worldmodels": "worldmodels", "worldmodels.envs": "envs", "worldmodels.agents": "agents"}

PROBE = """
import sys
# the checkout's editable install must not answer for this interpreter: only the installed wheel
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv[1])
import agents, envs
assert agents.OWNER == "stub" and envs.OWNER == "stub", (agents.__file__, envs.__file__)
import worldmodels, worldmodels.agents.cli, worldmodels.envs
from worldmodels.agents.commands import list_presets
assert worldmodels.__file__.startswith(sys.argv[1]), worldmodels.__file__
assert "kvae_pendulum" in list_presets(), list_presets()
sys.exit(worldmodels.agents.cli.main(sys.argv[2:]))
"""


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for name, folder in MAPPED.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *rel)))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert cfg["package-dir"]["worldmodels.configs"] == "configs" and "worldmodels.configs" in listed


def test_top_level_envs_and_agents_are_refused_in_a_checkout():
    r = subprocess.run([sys.executable, "-c", "import agents"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode != 0 and "import worldmodels.agents" in r.stderr


def _isolation() -> list[str]:
    """Build without isolation where this setuptools builds wheels itself (>= 70.1), else isolated."""
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return ["--no-build-isolation"] if (major, minor) >= (70, 1) else []


def test_wheel_beside_a_distribution_owning_envs_and_agents_runs_a_preset(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", *_isolation(),
                            "-q", "-w", str(wheels)], capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.fail(f"pip wheel failed: {build.stderr[-2000:]}")
    stub = tmp_path / "stub"
    for pkg in ("envs", "agents"):
        (stub / pkg).mkdir(parents=True)
        (stub / pkg / "__init__.py").write_text('OWNER = "stub"\n')
    (stub / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "stub-envs-agents"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["envs", "agents"]\n')
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *_isolation(),
                              "--target", str(target), *map(str, wheels.glob("*.whl")), str(stub)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith((".dist-info", "bin"))) == \
        ["agents", "envs", "worldmodels"]
    assert (target / "worldmodels" / "configs" / "kvae_pendulum.yaml").is_file()
    run = subprocess.run([sys.executable, "-c", PROBE, str(target), "train", "--config", "kvae_pendulum",
                          "--steps", "1", "--set", "data.preset=pendulum_small",
                          "--set", f"data.root={tmp_path / 'data'}",
                          "--set", "train.tensorboard=false", "--run-dir", str(tmp_path / "run"), "--no-progress",
                          "--device", "cpu"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
