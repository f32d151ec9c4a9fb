"""The house by who may use it: each package imports only the layers below it (README, "How it is
built"). Read from the source as text, so a forbidden import fails here before anything runs."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# package -> what it may import of the project (a package, or one module of a package)
MAY_IMPORT = {
    "geoqueue": set(),                                     # the producer distribution: nothing of the fleet
    "vendors": {"geoqueue"},
    "config": {"geoqueue"},
    "beat_schedule": {"geoqueue"},
    "services": {"config", "vendors", "geoqueue", "runtime.errors"},
    "runtime": {"config", "services", "vendors", "geoqueue", "beat_schedule"},
    "tasks": {"runtime", "services", "vendors", "config", "geoqueue"},
    "webhooks": {"config", "geoqueue"},
    "workers": {"runtime", "services", "config", "geoqueue", "webhooks", "beat_schedule"},
    "api": {"config", "webhooks", "geoqueue"},
    "sandbox": set(),
}
PROJECT = set(MAY_IMPORT) | {"devstack", "bench", "tests"}


def package_of(path: Path, root: Path) -> str:
    top = path.relative_to(root).parts[0]
    return "geoqueue" if top == "client" else top.removesuffix(".py")


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import of the project's own code, at any depth of the file;
    `from runtime import errors` counts as runtime.errors."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT]


def allowed(owner: str, name: str) -> bool:
    top = name.split(".")[0]
    return top == owner or top in MAY_IMPORT[owner] or any(
        name == rule or name.startswith(rule + ".") for rule in MAY_IMPORT[owner] if "." in rule)


def forbidden_imports(paths, root: Path = ROOT) -> list[str]:
    problems = []
    for path in paths:
        owner = package_of(path, root)
        problems += [f"{path.relative_to(root)}:{line}: {owner} may not import {name}"
                     for line, name in project_imports(path) if not allowed(owner, name)]
    return problems


def layered_sources():
    for top in MAY_IMPORT:
        base = ROOT / ("client/geoqueue" if top == "geoqueue" else top)
        yield from [base.with_suffix(".py")] if base.with_suffix(".py").exists() else sorted(base.rglob("*.py"))


def test_every_package_imports_only_the_layers_below_it():
    assert forbidden_imports(layered_sources()) == []


def test_a_forbidden_import_is_found_wherever_it_stands(tmp_path):
    """The check itself: an import of the Celery processes from a vendor package, even inside a
    function, and of the runtime from the HTTP API, are both caught."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "api").mkdir()
    (tmp_path / "tasks" / "x.py").write_text("from runtime.tasks import task\n\n"
                                             "def f():\n    from workers import app\n")
    (tmp_path / "api" / "y.py").write_text("import config.settings\nfrom runtime import ending\n")
    problems = forbidden_imports([tmp_path / "tasks" / "x.py", tmp_path / "api" / "y.py"], tmp_path)
    assert problems == ["tasks/x.py:4: tasks may not import workers.app",
                        "api/y.py:2: api may not import runtime.ending"]


def test_config_and_the_api_load_without_building_the_celery_app():
    import subprocess
    import sys

    code = ("import sys, config.settings, config.redis_client, config.redaction, api.app\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('workers', 'runtime', 'tasks')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{ROOT}:{ROOT / 'client'}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
