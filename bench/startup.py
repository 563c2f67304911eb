"""Start-up overhead per job: the Snakefile's parse and each rule script's imports, side by side.

Run from the repository root (nothing is asserted):
    python bench/startup.py [--repeats 3] [--config config/config.yaml] [--scripts infer crf ...]

A cohort runs about 14 jobs per subject (17,000 for BraTS' 1,251 subjects), and each job pays:

- the Snakefile's parse, once per `snakemake` invocation and, on a cluster, once more per cluster job on the
  compute node. Shown as the wall seconds of `snakemake --version` (Snakemake's own start-up), `snakemake
  --list-rules` (the parse) and `snakemake -n` (the parse and the DAG, from a fresh directory, so only what
  precedes the manifests' checkpoint);
- its script's imports: the seconds a fresh interpreter takes to run the script's import statements (those
  after `log_to_file` and under `if __name__ == "__main__":` too) and the imports that the lesionseg functions
  it calls, and the functions these call, always run (found with :mod:`ast`: imports under an `if` or a `try`,
  a file format or a case the job may not meet, and those of classes' methods are not counted). Snakemake's
  own preamble of every script (unpickling the job) is shown once.

Each figure is the best of ``--repeats`` runs, in seconds, of the code in this checkout (first on the
PYTHONPATH); "heavy" lists the large packages that were imported.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numba", "nnunetv2", "ants", "SimpleITK", "skimage", "matplotlib", "scipy.ndimage", "scipy.stats",
         "pandas", "nibabel", "jsonschema")
PREAMBLE = "\n".join(["import pickle", "import snakemake.io", "from snakemake.logging import logger",
                      "from snakemake.iocontainers import Snakemake"])
"""What Snakemake's preamble of a ``script:`` imports before the script runs (snakemake.script.PythonScript)."""

_TIMED = """
import sys, time
start = time.perf_counter()
{code}
elapsed = time.perf_counter() - start
print("@@startup", elapsed, [m for m in {heavy!r} if m in sys.modules])
"""
# Snakemake's own command line, in this interpreter so that the modules it imported can be listed.
_SNAKEMAKE = """
import sys
from snakemake.cli import main
try:
    main({argv!r})
except SystemExit as end:
    if end.code:
        raise
print("@@startup", 0.0, [m for m in {heavy!r} if m in sys.modules])
"""


def imports_in(nodes: list[ast.AST]) -> list[ast.Import | ast.ImportFrom]:
    """The absolute import statements in these nodes and below them, in order, except under ``if TYPE_CHECKING:``."""
    found = []
    for node in nodes:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0):
            found.append(node)
        found += imports_in(list(ast.iter_child_nodes(node)))
    return found


def unconditional_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The absolute import statements a function body always runs: not those under an ``if`` or a ``try`` (a
    file format, or a case, that the job may not meet) or in a nested function."""
    found = []
    for statement in body:
        if isinstance(statement, ast.Import) or (isinstance(statement, ast.ImportFrom) and statement.level == 0):
            found.append(statement)
        elif isinstance(statement, ast.For | ast.While | ast.With):
            found += unconditional_imports(statement.body)
    return found


@lru_cache(maxsize=None)
def package_module(module: str) -> tuple[dict[str, ast.FunctionDef], dict[str, str]]:
    """A lesionseg module's module-level functions by name, and the module each name it imports comes from."""
    base = ROOT.joinpath(*module.split("."))
    source = next((p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()), None)
    if not module.startswith("lesionseg") or source is None:
        return {}, {}
    functions, imported = {}, {}
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.update({alias.asname or alias.name: node.module for alias in node.names})
    return functions, imported


def deferred_imports(module: str, name: str, seen: set[tuple[str, str]]) -> list[ast.Import | ast.ImportFrom]:
    """The imports that the body of lesionseg function ``name`` of ``module`` always runs, and those of the
    lesionseg functions it calls, followed through the modules that re-export a name (a class's methods are not
    followed)."""
    if (module, name) in seen:
        return []
    seen.add((module, name))
    functions, imported = package_module(module)
    if name not in functions:
        return deferred_imports(imported[name], name, seen) if name in imported else []
    body = functions[name].body
    found = unconditional_imports(body)
    local = {alias.asname or alias.name: node.module for node in found if isinstance(node, ast.ImportFrom)
             for alias in node.names}
    called = {node.func.id for statement in body for node in ast.walk(statement)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    for callee in sorted(called):
        if callee in local:
            found += deferred_imports(local[callee], callee, seen)
        elif callee in functions or callee in imported:
            found += deferred_imports(module, callee, seen)
    return found


def script_imports(path: Path) -> str:
    """What a script's job imports: the script's import statements, in order (those in ``if __name__ ==
    "__main__":`` too), then those that the lesionseg functions it calls, and the lesionseg functions these call,
    always run (where the package defers an import to the function that needs it)."""
    statements = imports_in([ast.parse(path.read_text(), filename=str(path))])
    deferred, seen = [], set()
    for statement in statements:
        if isinstance(statement, ast.ImportFrom):
            for alias in statement.names:
                deferred += deferred_imports(statement.module, alias.name, seen)
    lines = [ast.unparse(node) for node in [*statements, *deferred]]
    return "\n".join(dict.fromkeys(lines))


def run_python(code: str, cwd: Path) -> tuple[float, float, list[str]]:
    """Wall seconds of a fresh interpreter running ``code``, the seconds it reported, the heavy modules loaded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("@@startup ")]
    if done.returncode or not lines:
        raise RuntimeError(f"failed ({done.returncode}):\n{code}\n{done.stderr[-2000:]}")
    _, seconds, heavy = lines[-1].split(" ", 2)
    return wall, float(seconds), ast.literal_eval(heavy)


def best_of(repeats: int, code: str, cwd: Path) -> tuple[float, float, list[str]]:
    runs = [run_python(code, cwd) for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[-1][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is shown")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml", help="config of the dry run")
    parser.add_argument("--scripts", nargs="*", help="only these scripts (names without .py)")
    args = parser.parse_args()

    print(f"{sys.executable}, best of {args.repeats}; seconds")
    workflow = ["-s", str(ROOT / "Snakefile"), "--configfile", str(args.config.resolve())]
    runs = {"snakemake --version": ["--version"], "snakemake --list-rules (parse)": [*workflow, "--list-rules"],
            "snakemake -n (parse + DAG)": [*workflow, "--cores", "1", "-n", "--quiet", "all"]}
    print(f"{'Snakemake (wall)':<34} {'s':>6}   heavy modules imported")
    with tempfile.TemporaryDirectory(prefix="startup-") as workdir:
        for label, argv in runs.items():
            wall, _, heavy = best_of(args.repeats, _SNAKEMAKE.format(argv=argv, heavy=HEAVY), Path(workdir))
            print(f"{label:<34} {wall:6.2f}   {', '.join(heavy) or '-'}", flush=True)

    print()
    print(f"{'script (imports)':<34} {'s':>6}   heavy modules imported")
    _, seconds, heavy = best_of(args.repeats, _TIMED.format(code=PREAMBLE, heavy=HEAVY), ROOT)
    print(f"{'(Snakemake script preamble)':<34} {seconds:6.2f}   {', '.join(heavy) or '-'}")
    scripts = sorted((ROOT / "scripts").glob("*.py"))
    if args.scripts:
        scripts = [s for s in scripts if s.stem in args.scripts]
    results = {}
    for script in scripts:
        _, seconds, heavy = best_of(args.repeats, _TIMED.format(code=script_imports(script), heavy=HEAVY), ROOT)
        results[script.stem] = seconds
        print(f"{script.name:<34} {seconds:6.2f}   {', '.join(heavy) or '-'}", flush=True)
    print()
    print("as JSON:", json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
