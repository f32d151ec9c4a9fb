"""Readers of deploy/: the Dockerfile's stages and the Kubernetes manifests."""
from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def k8s_documents():
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            yield path.name, document


def dockerfile_stages() -> dict[str, list[str]]:
    """Each build stage's instructions, by stage name."""
    stages: dict[str, list[str]] = {}
    current = None
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip()
            stages[current] = []
        elif line.strip() and not line.startswith("#") and current:
            stages[current].append(line.strip())
    return stages
