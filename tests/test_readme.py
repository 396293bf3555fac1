"""The README's Python blocks run, so its examples cannot rot.

Each block runs in a fresh interpreter from an empty temporary folder (no KERAS_BACKEND from the
calling shell: a block that wants JAX sets it itself, as the README shows). A block that starts
with ``# readme-test: skip (reason)`` (it needs CIFAR-10 or a network) is reported as skipped with
its reason; every other block must run. tools/readme_blocks.py finds the blocks.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supcon_lib import paths

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import readme_blocks  # noqa: E402

README_TEXT = readme_blocks.README.read_text(encoding="utf-8")
BLOCKS = readme_blocks.python_blocks(README_TEXT)
_CLEARED = ("KERAS_BACKEND", "PYTHONPATH", "SUPCON_PROFILE", "SUPCON_CIFAR10_DIR")


def test_the_own_model_section_has_its_examples():
    own = [b for b in BLOCKS if b.section == readme_blocks.OWN_MODEL_SECTION]
    assert all(b.skip_reason is None for b in own), "the section's examples run offline: none may be skipped"
    assert any("MultiView" in b.code and "SupConLoss" in b.code and "compile(" in b.code for b in own), (
        "a model of one's own with the library's augmentation, MultiView and SupConLoss in compile")
    assert any("GradientTape" in b.code and "supcon_loss" in b.code for b in own)
    assert any("jax.value_and_grad" in b.code and "supcon_loss" in b.code for b in own)


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"line{b.line}")
def test_readme_block_runs(block, tmp_path):
    if block.skip_reason is not None:
        pytest.skip(f"{block.where} ({block.section}): {block.skip_reason}")
    script = tmp_path / f"readme_{block.line}.py"
    script.write_text(block.code, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update(MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="2", SUPCON_RUNS_DIR=str(tmp_path / "runs"),
               SUPCON_FIGURES_DIR=str(tmp_path / "figures"))
    result = subprocess.run([sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (
        f"{block.where} ({block.section}) failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def test_block_markers():
    text = "\n".join([
        "## One", "```python", "# readme-test: skip (needs CIFAR-10 (163 MiB))", "x = 1", "```",
        "```bash", "## not a heading: inside a fence", "```",
        "## Two", "```python", "y = 2", "```",
    ])
    first, second = readme_blocks.python_blocks(text)
    assert (first.line, first.section, first.skip_reason) == (2, "One", "needs CIFAR-10 (163 MiB)")
    assert (second.line, second.section, second.skip_reason, second.code) == (10, "Two", None, "y = 2\n")
    for broken in ("# readme-test: skip", "# readme-test: skip ()", "# readme-test: skp (typo)",
                   "x = 1\n# readme-test: skip (not on the first line)"):
        with pytest.raises(ValueError, match="readme-test"):
            readme_blocks.python_blocks(f"```python\n{broken}\n```")
    with pytest.raises(ValueError, match="never closed"):
        readme_blocks.python_blocks("```python\nx = 1\n")


def test_readme_installs_the_release():
    assert f'pip install "{paths.INSTALL_SOURCE}"' in README_TEXT
