"""Check that the package stands alone: build the wheel, install it without the dev extra into a
new virtual environment in a temporary folder, and run the README's "Use it in your own model"
examples with it from a folder outside the checkout.

    python tools/check_wheel.py [--keep] [--timeout SECONDS]

The dependencies come from pyproject.toml through pip (from PyPI, or whatever index pip is
configured with). Nothing of the checkout is on the path of the new environment: the examples
import the installed package, which is checked to live inside that environment. A block that
imports jax is left out, with a message: JAX is not a dependency of the package (the README test,
tests/test_readme.py, runs that block in the development environment). Exits non-zero on any
failure and then keeps the temporary folder for inspection; ``--keep`` keeps it in any case.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_blocks import OWN_MODEL_SECTION, README, ROOT, python_blocks  # noqa: E402

WHEEL_DIR = ROOT / "build" / "wheel"
#: Variables of the calling shell that would let the examples see the checkout or change backend.
_CLEARED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "KERAS_BACKEND", "VIRTUAL_ENV", "SUPCON_PROFILE",
            "SUPCON_CIFAR10_DIR", "SUPCON_RUNS_DIR", "SUPCON_FIGURES_DIR")


class CheckFailed(RuntimeError):
    """One step of the check failed; the message says which and why."""


def package_version() -> str:
    """``__version__`` from supcon_lib/__init__.py, read without importing the package."""
    tree = ast.parse((ROOT / "supcon_lib" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise CheckFailed("supcon_lib/__init__.py defines no __version__")


def run(command, cwd, env=None, timeout=None, what=None):
    """Run ``command``; raise CheckFailed with its output when it fails."""
    started = time.perf_counter()
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise CheckFailed(f"{what or command[0]} failed (exit {result.returncode}, {seconds:.0f} s):\n"
                          f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result, seconds


def build_wheel(version: str) -> Path:
    WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    for old in WHEEL_DIR.glob("supcon_lib-*.whl"):
        old.unlink()
    _, seconds = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", ".", "-w", WHEEL_DIR], cwd=ROOT,
                     what="pip wheel")
    wheels = sorted(WHEEL_DIR.glob(f"supcon_lib-{version}-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel supcon_lib-{version}-*.whl in {WHEEL_DIR}, found {wheels}")
    with zipfile.ZipFile(wheels[0]) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    if tops != {"supcon_lib", f"supcon_lib-{version}.dist-info"}:
        raise CheckFailed(f"{wheels[0].name} holds more than the package and its metadata: {sorted(tops)}")
    print(f"built {wheels[0].relative_to(ROOT)} in {seconds:.0f} s")
    return wheels[0]


def clean_env(home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update(MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    env["PATH"] = os.pathsep.join([str(home / "venv" / "bin"), env.get("PATH", "")])
    return env


def imports_jax(code: str) -> bool:
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "jax" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "jax":
            return True
    return False


def check(home: Path, timeout: int) -> None:
    version = package_version()
    wheel = build_wheel(version)

    python = home / "venv" / "bin" / "python"
    run([sys.executable, "-m", "venv", home / "venv"], cwd=home, what="python -m venv")
    env = clean_env(home)
    _, seconds = run([python, "-m", "pip", "install", "--quiet", wheel], cwd=home, env=env,
                     timeout=3600, what="pip install of the wheel (no dev extra)")
    print(f"installed {wheel.name} and its dependencies into {home / 'venv'} in {seconds:.0f} s")

    outside = home / "run"
    outside.mkdir()
    probe = (
        "import importlib.metadata, pathlib, sys\n"
        "import supcon_lib\n"
        "from supcon_lib import paths\n"
        "location = pathlib.Path(supcon_lib.__file__).resolve()\n"
        "assert pathlib.Path(sys.prefix).resolve() in location.parents, f'imported from {location}'\n"
        "assert supcon_lib.__version__ == importlib.metadata.version('supcon_lib') == sys.argv[1]\n"
        "assert paths.repo_root() is None and paths.shared_cifar10_dir() is None\n"
        "print(f'supcon_lib {supcon_lib.__version__} from {location.parent}')\n"
    )
    result, _ = run([python, "-c", probe, version], cwd=outside, env=env, what="the installed package's own checks")
    print(result.stdout.strip())
    run([python, "-m", "supcon_lib", "--help"], cwd=outside, env=env, what="python -m supcon_lib --help")

    blocks = [b for b in python_blocks(README.read_text(encoding="utf-8")) if b.section == OWN_MODEL_SECTION]
    if not blocks:
        raise CheckFailed(f"README.md has no Python block under '## {OWN_MODEL_SECTION}'")
    ran = 0
    for block in blocks:
        if block.skip_reason:
            print(f"{block.where}: skipped ({block.skip_reason})")
            continue
        if imports_jax(block.code):
            print(f"{block.where}: left out (imports jax, which the package does not depend on)")
            continue
        script = outside / f"readme_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        result, seconds = run([python, script.name], cwd=outside, env=env, timeout=timeout,
                              what=f"{block.where} ({OWN_MODEL_SECTION}) with the installed wheel")
        print(f"{block.where}: ran in {seconds:.0f} s" + "".join(f"\n    {line}" for line in result.stdout.splitlines()))
        ran += 1
    if not ran:
        raise CheckFailed(f"no block of '## {OWN_MODEL_SECTION}' ran")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (venv and scripts)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed to each README block")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="supcon-wheel-check-")).resolve()
    if ROOT in home.parents:
        raise SystemExit(f"the temporary folder {home} lies inside the checkout; set TMPDIR elsewhere")
    try:
        check(home, args.timeout)
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"check_wheel: FAILED: {exc}\n(the environment is kept in {home})", file=sys.stderr)
        return 1
    if args.keep:
        print(f"kept {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    print("check_wheel: the wheel installs on its own and the README examples run with it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
