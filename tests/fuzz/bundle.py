"""Bundle the Matrix spec's OpenAPI files into one self-contained OpenAPI document.

    python -m tests.fuzz.bundle --spec-git PATH [--tag v1.19] [--api client-server]

The spec keeps each API as many YAML files (``data/api/<api>/*.yaml``) whose schemas point at
shared definitions through relative ``$ref``s. Schemathesis needs one document, so this reads the
files of one spec release straight from a git checkout of matrix-org/matrix-spec (``git show
TAG:path``, no work tree needed), inlines every ``$ref`` and prefixes each path with its file's
``basePath``. The output is committed beside this file (``<api>-<tag>.json``) so a fresh clone
can fuzz without the spec repository; re-run this to move to a newer release.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


class SpecFiles:
    """Files of one spec release, read from git and parsed once."""

    def __init__(self, git_dir: str, tag: str) -> None:
        self.git_dir = git_dir
        self.tag = tag
        self._cache: dict[str, Any] = {}

    def list(self, directory: str) -> list[str]:
        out = subprocess.run(
            ["git", "-C", self.git_dir, "ls-tree", "--name-only", f"{self.tag}:{directory}"],
            check=True, capture_output=True, text=True,
        ).stdout
        return sorted(posixpath.join(directory, name) for name in out.split())

    def load(self, path: str) -> Any:
        if path not in self._cache:
            text = subprocess.run(
                ["git", "-C", self.git_dir, "show", f"{self.tag}:{path}"],
                check=True, capture_output=True, text=True,
            ).stdout
            self._cache[path] = yaml.safe_load(text)
        return self._cache[path]


def _pointer(doc: Any, fragment: str) -> Any:
    for part in fragment.strip("/").split("/"):
        if part:
            doc = doc[part.replace("~1", "/").replace("~0", "~")]
    return doc


def inline_refs(files: SpecFiles, path: str, node: Any, stack: tuple[str, ...] = ()) -> Any:
    """``node`` (from file ``path``) with every ``$ref`` replaced by what it names; keys next
    to a ``$ref`` override the referenced object's (as the spec's own tooling does)."""
    if isinstance(node, list):
        return [inline_refs(files, path, item, stack) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    if "$ref" in node:
        target, _, fragment = node["$ref"].partition("#")
        target_path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target)) if target else path
        key = f"{target_path}#{fragment}"
        if key in stack:  # a recursive schema: stop with "anything" rather than loop
            return {}
        referenced = _pointer(files.load(target_path), fragment)
        resolved = inline_refs(files, target_path, referenced, (*stack, key))
        if isinstance(resolved, dict):
            result.update(resolved)
    for k, v in node.items():
        if k != "$ref":
            result[k] = inline_refs(files, path, v, stack)
    return result


def bundle(files: SpecFiles, api: str) -> dict[str, Any]:
    directory = f"data/api/{api}"
    out: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"Matrix {api} API", "version": files.tag},
        "paths": {},
        "components": {"securitySchemes": {}},
    }
    try:
        out["components"]["securitySchemes"] = files.load(f"{directory}/definitions/security.yaml")
    except subprocess.CalledProcessError:
        pass
    for path in files.list(directory):
        if not path.endswith(".yaml"):
            continue
        doc = inline_refs(files, path, files.load(path))
        base = doc["servers"][0]["variables"]["basePath"]["default"] if doc.get("servers") else ""
        for route, methods in doc.get("paths", {}).items():
            for method, operation in methods.items():
                operation.setdefault("x-spec-file", posixpath.basename(path))
                out["paths"].setdefault(base + route, {})[method] = operation
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec-git", required=True, help="git directory of matrix-org/matrix-spec")
    parser.add_argument("--tag", default="v1.19")
    parser.add_argument("--api", default="client-server", choices=["client-server", "server-server"])
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    doc = bundle(SpecFiles(args.spec_git, args.tag), args.api)
    output = args.output or HERE / f"{args.api}-{args.tag}.json"
    output.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
    ops = sum(len(m) for m in doc["paths"].values())
    print(f"{output}: {ops} operations", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
