"""Layout rules: no top-level name shadows the stdlib; schedulers never import ray."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_top_level_name_shadows_the_standard_library():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    names = {p.split("/")[0] for p in tracked} | {p.name for p in ROOT.iterdir()}
    shadowing = sorted(n for n in names if n.removesuffix(".py") in sys.stdlib_module_names)
    assert not shadowing, f"top-level names shadow the standard library: {shadowing}"


def test_schedulers_do_not_import_ray():
    offenders = []
    for path in (ROOT / "raysched" / "schedulers").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in mods
                          if m == "ray" or m.startswith("ray.")]
    assert not offenders, offenders


def test_importing_schedulers_does_not_load_ray():
    code = ("import sys, raysched.schedulers.policies.registry, raysched.schedulers.spec; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
