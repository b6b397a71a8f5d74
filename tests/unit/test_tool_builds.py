"""Two sessions that start on a cold tool cache build each tool once, not twice into one scratch dir."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import helpers

FAKE_GO = textwrap.dedent("""\
    #!/usr/bin/env bash
    # Stands in for the Go toolchain: `go install` takes a moment and writes its binary into $GOBIN.
    echo "$*" >>"$FAKE_GO_LOG"
    if [[ "$1" == install ]]; then
      sleep 1
      for pkg in "$@"; do
        case "$pkg" in *cmd/*@*) name="${pkg##*/}"; name="${name%@*}"; printf '#!/bin/sh\\n' >"$GOBIN/$name"
                                  chmod +x "$GOBIN/$name" ;; esac
      done
    fi
    """)


def test_two_concurrent_builds_into_one_cache_build_the_tool_once(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "go.log"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_GO_LOG": str(log),
           "HEADWATER_CACHE": str(tmp_path / "cache")}
    script = str(helpers.ROOT / "hack" / "build-tools.sh")
    builds = [subprocess.Popen(["bash", script, "--helm"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True) for _ in range(2)]
    outputs = [b.communicate(timeout=60)[0] for b in builds]
    assert [b.returncode for b in builds] == [0, 0], outputs
    installs = [line for line in log.read_text().splitlines() if line.startswith("install")]
    assert len(installs) == 1, (installs, outputs)
    assert any("cached" in out for out in outputs), outputs
    check = subprocess.run(["bash", script, "--check", "--helm"], env=env, check=False)
    assert check.returncode == 0
