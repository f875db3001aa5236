"""The front door: README.md, docs/, CHANGELOG.md, CITATION.cff and the packaging metadata.

Checks that the README stays short and free of development history, that every relative link
resolves, that the README's and each docs page's first Python example runs as written, that
the documentation site builds without a broken reference, and that the version and the set-up
commands are stated in one place each.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import worldmodels

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: generated from experiments/results/*.json by another tool; it may name commits as provenance
GENERATED_PAGES = {"results.md"}
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"
MAX_README_LINES = 250
EXAMPLE_TIMEOUT_S = 180  # the examples take seconds on an idle CPU; the margin is for a busy one

#: words that belong to the history of the code, not to the product
HISTORY_PATTERNS = {
    "session": re.compile(r"\bsessions?\b", re.I),
    "the issue": re.compile(r"\bthe issue'?s?\b", re.I),
    "issue number": re.compile(r"\bissue\s*#?\d+", re.I),
    "we measured in round": re.compile(r"\bin round \d+", re.I),
    "machine path /work/": re.compile(r"/work/"),
    "machine path /tmp/": re.compile(r"/tmp/"),
    "notes folder": re.compile(r"\bnotes/"),
    "placeholder": re.compile(r"\b(TODO|TBD|FIXME|XXX)\b"),
}
#: a commit-like token: 7-40 hex digits with at least one digit and one letter
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def doc_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def hand_written_pages() -> list[Path]:
    return [p for p in doc_pages() if p.name not in GENERATED_PAGES]


def strip_results_block(text: str) -> str:
    """README text without the generated results block (kept: the markers)."""
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < start:
        return text
    return text[: start + len(RESULTS_START)] + text[end:]


def first_python_block(path: Path) -> str:
    match = PYTHON_BLOCK.search(path.read_text(encoding="utf-8"))
    assert match is not None, f"{path.name}: expected a ```python example, found none"
    return match.group(1)


def run_example(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = cwd / "example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S
    )


# ----------------------------------------------------------------------------- README shape


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md: expected at most {MAX_README_LINES} lines, got {n}"


@pytest.mark.parametrize("path", [README, *hand_written_pages()], ids=lambda p: p.name)
def test_no_development_history(path: Path):
    text = path.read_text(encoding="utf-8")
    if path == README:
        text = strip_results_block(text)
    found = [f"{name}: {m.group(0)!r}" for name, rx in HISTORY_PATTERNS.items() for m in rx.finditer(text)]
    found += [f"commit hash: {m.group(0)!r}" for m in COMMIT_HASH.finditer(text)]
    assert not found, f"{path.name} speaks of its own development: {found}"


def test_history_patterns_catch_what_they_should():
    bad = "measured in session 4 (commit 52f34a4) against the issue's baseline, see /work/notes/x.md (TBD)"
    hits = {name for name, rx in HISTORY_PATTERNS.items() if rx.search(bad)}
    assert {"session", "the issue", "machine path /work/", "notes folder", "placeholder"} <= hits
    assert COMMIT_HASH.search(bad)
    assert not COMMIT_HASH.search("the deadline, 12345678 frames, a facade, 0.0031 wrong pixels")


def test_results_markers_present_once_and_in_order():
    text = README.read_text(encoding="utf-8")
    assert text.count(RESULTS_START) == 1 and text.count(RESULTS_END) == 1
    assert text.index(RESULTS_START) < text.index(RESULTS_END)


def test_readme_cites_the_thesis_and_both_papers_and_names_the_license():
    text = README.read_text(encoding="utf-8")
    for title in (
        "Deep Latent Variable Models for Sequential Data",
        "A Disentangled Recognition and Nonlinear Dynamics Model for Unsupervised Learning",
        "Generative Temporal Models with Spatial Memory for Partially Observed Environments",
    ):
        assert title in text, f"README.md: citation of {title!r} missing"
    assert text.count("@phdthesis") == 1 and text.count("@inproceedings") == 2
    assert "## License" in text and "(LICENSE)" in text


# ----------------------------------------------------------------------------- links


def relative_links(path: Path) -> list[str]:
    links = MD_LINK.findall(path.read_text(encoding="utf-8"))
    return [link for link in links if not re.match(r"^(https?:|mailto:|#)", link)]


@pytest.mark.parametrize("path", [README, *doc_pages()], ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(path: Path):
    missing = [link for link in relative_links(path) if not (path.parent / link.split("#")[0]).exists()]
    assert not missing, f"{path.name}: links to missing files {missing}"


def test_link_check_sees_links():
    links = relative_links(README)
    assert "LICENSE" in links and any(link.startswith("docs/") for link in links)


def test_every_area_has_a_page():
    names = {p.name for p in doc_pages()}
    expected = {
        "index.md",
        "environments.md",
        "datasets.md",
        "kalman.md",
        "kvae.md",
        "gtmsm.md",
        "training.md",
        "planning.md",
        "benchmarks.md",
        "api.md",
    }
    assert expected <= names, f"docs/: missing {sorted(expected - names)}"


# ----------------------------------------------------------------------------- runnable examples


def test_readme_example_runs(tmp_path: Path):
    code = first_python_block(README)
    assert len(code.splitlines()) <= 20, "the README example should stay about 15 lines"
    done = run_example(code, tmp_path)
    assert done.returncode == 0, f"README example failed:\n{done.stderr[-3000:]}"
    assert "(8, 1, 10, 1, 16, 16)" in done.stdout, done.stdout
    assert (tmp_path / "runs" / "kvae" / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("page", [p.name for p in hand_written_pages() if p.name != "api.md"])
def test_docs_page_starts_with_a_runnable_example(page: str, tmp_path: Path):
    text = (DOCS / page).read_text(encoding="utf-8")
    body = text.split("\n## ", 1)[0]  # the example comes before the first section
    assert "```python" in body, f"docs/{page}: expected a Python example before the first section"
    done = run_example(first_python_block(DOCS / page), tmp_path)
    assert done.returncode == 0, f"docs/{page} example failed:\n{done.stderr[-3000:]}"


# ----------------------------------------------------------------------------- docs site


def test_docs_build_strict(tmp_path: Path):
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(REPO / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "kalman_smoother" in api and "GTMSMConfig" in api, "the API page lacks the docstrings"


def test_mkdocs_nav_lists_every_page():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = [next(iter(item.values())) for item in config["nav"]]
    assert sorted(listed) == sorted(p.name for p in doc_pages()), "mkdocs.yml nav and docs/*.md differ"


# ----------------------------------------------------------------------------- metadata


def pyproject() -> dict:
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11+)")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_is_defined_once():
    project = pyproject()["project"]
    assert "version" not in project and "version" in project.get("dynamic", [])
    attr = pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "worldmodels.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", worldmodels.__version__)
    assert "version" not in yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))


def test_changelog_lists_the_current_version():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (\S+)", text, re.M)
    assert versions and versions[0] in ("Unreleased", worldmodels.__version__)
    assert worldmodels.__version__ in versions


def test_citation_cff_names_the_thesis_and_both_papers():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["preferred-citation"]["type"] == "thesis"
    assert cff["preferred-citation"]["title"] == "Deep Latent Variable Models for Sequential Data"
    years = sorted(ref["year"] for ref in cff["references"])
    assert years == [2017, 2018] and all(ref["authors"][0]["family-names"] == "Fraccaro" for ref in cff["references"])


def test_license_matches_the_metadata():
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert pyproject()["project"]["license"] == {"text": "MIT"}
    assert (REPO / "worldmodels" / "py.typed").is_file()
    assert "py.typed" in pyproject()["tool"]["setuptools"]["package-data"]["worldmodels"]


def test_ci_runs_the_readme_test_command():
    readme = README.read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q' in readme
    assert "pip install torch==2.13.0 && pip install -e . && worldmodels demo" in readme
    assert "pip install -q torch==2.13.0" in ci and 'pip install -q -e ".[test]"' in ci
    assert re.search(r"^python -m pytest -q$", ci, re.M)
