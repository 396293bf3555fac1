"""The notebooks: every py:percent source has an .ipynb twin with the same cells, stripped of
outputs, and every notebook follows the collection's conventions. (nbmake executes them.)"""

import ast
import re
from pathlib import Path

import jupytext
import pytest

from supcon_lib import paths

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def cells(notebook):
    return [(cell.cell_type, cell.source.strip(), tuple(cell.metadata.get("tags", ()))) for cell in notebook.cells]


def test_there_are_notebooks():
    assert len(SOURCES) >= 2


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_ipynb_twin_matches_its_source(source):
    twin = source.with_suffix(".ipynb")
    assert twin.exists(), f"{twin.name} is missing: run `make sync-notebooks`"
    assert cells(jupytext.read(twin)) == cells(jupytext.read(source)), (
        f"{twin.name} has drifted from {source.name}: run `make sync-notebooks`")
    for cell in jupytext.read(twin, fmt="ipynb").cells:
        if cell.cell_type == "code":
            assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, (
                f"{twin.name} carries outputs; commit it stripped")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_conventions(source):
    notebook = jupytext.read(source)
    first = notebook.cells[0].source
    assert first.startswith("# "), "opens with a title"
    badge = f"https://colab.research.google.com/github/{paths.REPOSITORY}/blob/main/notebooks/{source.stem}.ipynb"
    assert badge in first, "Open-in-Colab badge points at this notebook in the one repository"
    for heading in ("In this notebook we will", "Prerequisites", "Run time"):
        assert heading in first
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "google.colab" in code
    setup = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "quiet.start()" in setup, "the setup cell starts Keras without TensorFlow's log lines"
    before = setup[:setup.index("quiet.start()")]
    assert "import keras" not in before and "from supcon_lib import quiet" in before
    assert setup.count("from supcon_lib import") == 2  # quiet first, then the modules the notebook uses
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", ())]
    assert len(tagged) == 1 and "runtime.choose_profile()" in tagged[0].source
    last = notebook.cells[-1].source
    for heading in ("## Summary", "In this notebook we", "## Exercises"):
        assert heading in last
    assert "../" not in code, "paths come from supcon_lib.paths, never relative to the notebook"
    number = int(source.stem[:2])
    following = sorted(s.stem for s in SOURCES if int(s.stem[:2]) == number + 1)
    if following:
        assert f"({following[0]}.ipynb)" in last, "links the next notebook"
    assert re.fullmatch(r"\d\d_[a-z0-9_]+", source.stem)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_colab_install_names_the_release(source):
    """The setup cell installs supcon_lib.paths.INSTALL_SOURCE (a release tag, not the moving main
    branch), spelt out in the notebook: it cannot import the library before installing it."""
    notebook = jupytext.read(source)
    setup = next(cell.source for cell in notebook.cells if cell.cell_type == "code")
    tree = ast.parse(setup)
    values = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
              and [getattr(target, "id", None) for target in node.targets] == ["INSTALL_SOURCE"]
              and isinstance(node.value, ast.Constant)]
    assert values == [paths.INSTALL_SOURCE], (
        f"the setup cell must set INSTALL_SOURCE = {paths.INSTALL_SOURCE!r} (supcon_lib.paths.INSTALL_SOURCE)")
    installs = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and any(isinstance(arg, ast.List) and any(getattr(e, "value", None) == "install" for e in arg.elts)
                        for arg in node.args)]
    assert len(installs) == 1, "one pip install in the setup cell"
    arguments = installs[0].args[0].elts
    assert isinstance(arguments[-1], ast.Name) and arguments[-1].id == "INSTALL_SOURCE", (
        "pip installs INSTALL_SOURCE, nothing else")


def run_folders(source):
    """The run-folder names a notebook uses: the expressions after ``paths.runs_dir() /``."""
    return set(re.findall(r"runs_dir\(\) / (f?\"[^\"]+\")", source.read_text()))


def makefile_notebook_list(name):
    text = (NOTEBOOKS.parent / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(rf"^{name} := (.*)$", text, re.MULTILINE)
    assert match, f"the Makefile defines {name}"
    return [Path(word).stem for word in match.group(1).split()]


def test_notebooks_run_apart_share_no_run_folder():
    """`make test` runs NB_APART beside the other notebooks, at the same time: none of them may
    use a run folder that another notebook uses (two processes on one folder refuse each other)."""
    apart = makefile_notebook_list("NB_APART")
    assert apart and all((NOTEBOOKS / f"{stem}.py").exists() for stem in apart), apart
    for stem in apart:
        mine = run_folders(NOTEBOOKS / f"{stem}.py")
        for other in SOURCES:
            if other.stem != stem:
                assert not mine & run_folders(other), f"{stem} and {other.stem} share run folders"
    # the check sees folders that chained notebooks share (names compared as written)
    assert run_folders(NOTEBOOKS / "04_cross_entropy_baseline.py") & run_folders(NOTEBOOKS / "05_supcon_two_phase.py")
