"""Static checks of the Dockerfile and .dockerignore.

These tests read the Dockerfile's text and check the invariants that matter (a multi-stage build pinned by
the constraints file, a non-root numeric user, the ``headwater`` entrypoint, nothing to build with in the
final image), fast and without any engine. That the image builds and runs is the real tier's part
(tests/real): hack/images.sh builds this Dockerfile with buildah, and the chart runs it on a real node.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def _logical_lines(text: str) -> list[str]:
    """Instructions with their line continuations joined; comments and blank lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def _parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def _pairs(rest: str) -> dict[str, str]:
    """KEY=value pairs of an ENV or LABEL instruction."""
    return dict(word.split("=", 1) for word in shlex.split(rest))


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


@pytest.fixture(scope="module")
def parsed() -> tuple[dict[str, str], list[Stage]]:
    return _parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(parsed: tuple[dict[str, str], list[Stage]]) -> Stage:
    return parsed[1][-1]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_build_has_a_builder_stage_whose_environment_the_final_stage_copies(
    parsed: tuple[dict[str, str], list[Stage]], final: Stage
) -> None:
    _, stages = parsed
    builders = [s.name for s in stages[:-1] if s.name]
    assert len(stages) >= 2 and builders, "a multi-stage build with a named builder stage"
    copied_from = [c for c in final.args("COPY") if c.startswith("--from=")]
    assert copied_from and all(c.split()[0].removeprefix("--from=") in builders for c in copied_from)


def test_the_final_image_is_a_slim_python_that_satisfies_requires_python(
    parsed: tuple[dict[str, str], list[Stage]], final: Stage, pyproject: dict[str, Any]
) -> None:
    base = _expand(final.base, parsed[0])
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", base)
    assert match, f"final base image {base!r} is not a python:X.Y-slim image"
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert minimum is not None
    assert (int(match[1]), int(match[2])) >= (int(minimum[1]), int(minimum[2]))


def test_dependencies_are_installed_only_from_the_hashed_lock_and_the_package_without_any(
    parsed: tuple[dict[str, str], list[Stage]],
) -> None:
    builder = parsed[1][0]
    installs = [r for r in builder.args("RUN") if "pip install" in r]
    assert len(installs) == 2 and all("--no-cache-dir" in r for r in installs)
    dependencies, package = installs
    assert "--require-hashes" in dependencies
    assert "-r requirements/runtime.txt" in dependencies and "-r requirements/build.txt" in dependencies
    assert "--no-deps" in package and "--no-build-isolation" in package  # nothing fetched unhashed
    assert any("requirements/runtime.txt" in c for c in builder.args("COPY"))


def test_the_final_stage_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.args("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    # Only a numeric UID lets the kubelet check runAsNonRoot without reading the image's /etc/passwd.
    assert uid.isdigit() and int(uid) == 65532
    assert not gid or (gid.isdigit() and int(gid) != 0)
    last_user = max(i for i, (kw, _) in enumerate(final.instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in final.instructions[last_user:]), "nothing runs as root after USER"


def test_the_entrypoint_is_headwater_and_the_default_command_is_the_operator(
    final: Stage, pyproject: dict[str, Any]
) -> None:
    assert json.loads(final.args("ENTRYPOINT")[-1]) == ["headwater"]
    assert json.loads(final.args("CMD")[-1]) == ["operator"]
    assert "headwater" in pyproject["project"]["scripts"]


def test_the_final_stage_installs_nothing_and_python_writes_no_bytecode(final: Stage) -> None:
    for command in final.args("RUN"):
        assert not re.search(r"pip |apt-get|apk |gcc|build-essential", command), command
    env: dict[str, str] = {}
    for rest in final.args("ENV"):
        env |= _pairs(rest)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert "/opt/headwater/bin" in env["PATH"].split(":")


def test_the_image_carries_oci_labels_that_agree_with_pyproject(
    final: Stage, pyproject: dict[str, Any]
) -> None:
    labels: dict[str, str] = {}
    for rest in final.args("LABEL"):
        labels |= _pairs(rest)
    prefix = "org.opencontainers.image."
    assert labels[prefix + "title"] == pyproject["project"]["name"]
    assert labels[prefix + "licenses"] == pyproject["project"]["license"]  # an SPDX expression
    assert labels[prefix + "description"] == pyproject["project"]["description"]
    versions = [a for a in final.args("ARG") if a.startswith("VERSION=")]
    assert versions == [f"VERSION={pyproject['project']['version']}"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern (or one matching a parent directory) wins."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        globs = {glob, glob.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(p, g) for p in prefixes for g in globs):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_local_state_out_but_lets_in_what_the_dockerfile_copies(
    parsed: tuple[dict[str, str], list[Stage]],
) -> None:
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    private_paths = (".venv/bin/python", ".git/config", "tests/conftest.py",
                     "operator/headwater/__pycache__/x.pyc", "operator/headwater.egg-info/PKG-INFO")
    for private in private_paths:
        assert _ignored(private, patterns), f"{private} would be sent to the Docker daemon"
    sources = [src for stage in parsed[1] for c in stage.args("COPY") if not c.startswith("--from")
               for src in c.split()[:-1]]
    assert sources
    for source in sources:
        assert not _ignored(source.rstrip("*").rstrip("/") or source, patterns), f"{source} is ignored"
        assert source.endswith("*") or (ROOT / source).exists(), f"{source} is copied but does not exist"


def _pins(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a hashed lock file."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            name = match[1].lower().replace("_", "-")
            pins[name] = (match[2], 0)
        elif "--hash=sha256:" in line:
            pins[name] = (pins[name][0], pins[name][1] + 1)
    return pins


def test_every_lock_pins_each_package_with_hashes_and_the_locks_agree() -> None:
    dev, runtime, build = (_pins(ROOT / "requirements" / f) for f in ("constraints.txt", "runtime.txt", "build.txt"))
    for pins in (dev, runtime, build):
        assert pins and all(count > 0 for _, count in pins.values()), "a pin without a hash"
    assert {name: version for name, (version, _) in runtime.items()}.items() <= {
        name: version for name, (version, _) in dev.items()}.items(), "the image's lock differs from development's"
    assert {"setuptools", "wheel"} <= set(build)


def test_the_dependency_floors_exclude_versions_with_published_advisories(pyproject: dict[str, Any]) -> None:
    """aiohttp below 3.14.5 has published advisories against its server (request smuggling, unbounded
    memory and CPU use, no header timeout); the lock must stay above every floor too."""
    floors = {re.split(r"[<>=!\[ ]", d, maxsplit=1)[0]: d for d in pyproject["project"]["dependencies"]}
    assert re.search(r">=3\.14\.5\b", floors["aiohttp"]), floors["aiohttp"]
    version = _pins(ROOT / "requirements" / "runtime.txt")["aiohttp"][0]
    assert tuple(int(p) for p in version.split(".")[:3]) >= (3, 14, 5)
