"""The README as a new operator follows it: every command in its ``sh`` blocks runs.

The commands run as written, in a fresh directory that is a git work tree with
the repository's ``.gitignore``, with two substitutions a test needs: the
interpreter (``$py``) is this one, and every port is a free one. Servers started
by ``run`` are waited for and stopped with SIGTERM. Afterwards ``git status``
must show nothing new: what the README's commands write (configs with the
registration secret, signing keys, a CA) must never be one ``git add -A`` away
from a commit.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.loader import load_config
from tests.integration.conftest import _free_port, _healthy
from tests.integration.test_testnet import _free_block

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# Commands the README must keep showing (the table lists the rest with placeholders).
DOCUMENTED = {
    "generate-config", "register-user", "run", "rotate-key",
    "testnet up", "testnet status", "testnet stop", "testnet start", "testnet down",
}
# The project's own scripts, which the README also shows: scripts/test is this
# suite, and tests/config/test_scripts.py runs scripts/run.
OWN_SCRIPTS = {"scripts/run", "scripts/test"}
_PORT = re.compile(r"(?<![\w.])(\d{4,5})(?![\w.])")


def readme_blocks() -> Iterator[list[list[str]]]:
    """The README's ``sh`` blocks: each logical line as shell words (comments dropped)."""
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S):
        lines = (shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines())
        yield [words for words in lines if words]


class Walkthrough:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRICOLOR_")}
        self.env["PYTHONPATH"] = str(REPO)
        self.ports: dict[str, str] = {}
        self.servers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.ran: set[str] = set()

    def port(self, number: str, block: bool = False) -> str:
        if number not in self.ports:
            self.ports[number] = str(_free_block(8) if block else _free_port())
        return self.ports[number]

    def substitute(self, words: list[str]) -> list[str]:
        out = []
        for i, word in enumerate(words):
            if word in ("$py", ".venv/bin/python"):
                out.append(sys.executable)
            elif i and words[i - 1] == "--base-port":
                out.append(self.port(word, block=True))
            else:
                out.append(_PORT.sub(lambda m: self.port(m.group(1)), word))
        return out

    def line(self, words: list[str]) -> None:
        if words[0].startswith("py="):
            assert words == ["py=.venv/bin/python"], words
            return
        if words[0] in OWN_SCRIPTS:
            assert os.access(REPO / words[0], os.X_OK), words[0]
            return
        commands: list[list[str]] = [[]]
        for word in words:  # `a & b &`: each command in the background
            if word == "&":
                commands.append([])
            else:
                commands[-1].append(word)
        for command in filter(None, commands):
            self.command(self.substitute(command))

    def command(self, argv: list[str]) -> None:
        assert argv[:3] == [sys.executable, "-m", "homeserver"], f"not a homeserver command: {argv}"
        sub = argv[3] if argv[3] != "testnet" else f"testnet {argv[4]}"
        self.ran.add(sub)
        if sub == "testnet up":  # copied as is, a second network would collide with the first
            assert "--base-port" in argv, "the README's testnet up must show --base-port"
        if sub == "run":  # a server: started now, checked and stopped after the block
            config = self.workdir / argv[argv.index("-c") + 1]
            log = open(config.with_suffix(".log"), "wb")  # the child keeps its own copy
            proc = subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.servers.append((proc, config))
            return
        result = subprocess.run(argv, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{shlex.join(argv[1:])}:\n{result.stderr}"

    def stop_servers(self) -> None:
        """Wait until every started server answers, then stop it as an operator would."""
        for proc, config in self.servers:
            url = f"http://127.0.0.1:{load_config(str(config), env={}).listeners[0].port}"
            deadline = time.monotonic() + 30
            while not _healthy(url):
                log = config.with_suffix(".log").read_text(errors="replace")
                assert proc.poll() is None, f"run -c {config} exited:\n{log}"
                assert time.monotonic() < deadline, f"run -c {config} did not answer:\n{log}"
                time.sleep(0.05)
        for proc, _ in self.servers:
            proc.send_signal(signal.SIGTERM)
        for proc, config in self.servers:
            assert proc.wait(timeout=10) == 0, config.with_suffix(".log").read_text(errors="replace")
        self.servers.clear()

    def kill_leftovers(self) -> None:
        for proc, _ in self.servers:
            proc.kill()
            proc.wait()
        if (self.workdir / "local/testnet/testnet.json").exists():
            subprocess.run(
                [sys.executable, "-m", "homeserver", "testnet", "down", "--dir", "local/testnet"],
                cwd=self.workdir, env=self.env, capture_output=True, timeout=60,
            )


def test_readme_commands_run_and_leave_the_work_tree_clean(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text((REPO / ".gitignore").read_text())
    walk = Walkthrough(tmp_path)
    try:
        for block in readme_blocks():
            for words in block:
                walk.line(words)
            walk.stop_servers()
    finally:
        walk.kill_leftovers()
    assert DOCUMENTED <= walk.ran, f"the README no longer shows {sorted(DOCUMENTED - walk.ran)}"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout
    assert status.splitlines() == ["?? .gitignore"], f"not ignored by .gitignore:\n{status}"


# ---- documents a user's clone must contain ---------------------------------------------

USER_FACING = [
    "README.md", "homeserver.yaml", ".ci/run", *(f"scripts/{p.name}" for p in (REPO / "scripts").iterdir()),
    *(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")),
    "sytest-lite/README.md", *(str(p.relative_to(REPO)) for p in (REPO / "sytest-lite/synapse").glob("*.sh")),
]


@pytest.mark.parametrize("name", USER_FACING)
def test_user_facing_files_point_only_at_files_in_the_repository(name: str) -> None:
    path = REPO / name
    text = path.read_text()
    assert "../shared" not in text and "/work/" not in text, f"{name} points outside the repository"
    for ref in re.findall(r"[\w./-]*[\w-]\.md\b", text):
        ref = ref.removeprefix("./")
        assert (REPO / ref).exists() or (path.parent / ref).exists(), f"{name} mentions {ref}, which is missing"


def test_readme_says_what_its_client_snippet_needs_installed() -> None:
    text = README.read_text()
    if "from nio import" in text:  # scripts/run installs only the server
        assert "pip install matrix-nio" in text


# Every top-level entry of the repository, so a stray file (a committed `pid`) fails here.
ROOT_ENTRIES = {
    ".ci", ".gitignore", "README.md", "ai_assistant", "bench", "client_api", "config", "docs", "federation",
    "Dockerfile", "docker-compose.federation.yml",  # the compose file (its configs are in config/compose)
    "contrib",  # nginx for a worker deployment, the Grafana dashboard, the image's entrypoint
    "homeserver", "homeserver.yaml", "pyproject.toml", "scripts", "storage", "sytest-lite", "tests",
    "web",  # the browser client (issue 16)
}


def test_the_repository_root_holds_only_known_entries() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    unknown = {path.split("/", 1)[0] for path in tracked.splitlines()} - ROOT_ENTRIES
    assert not unknown, f"unexpected files at the repository root: {sorted(unknown)} (add them here if meant)"
