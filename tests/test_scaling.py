"""`python -m bench.studies.scaling` on the CPUs this machine has: the 16-core run it prepares
is the same code with larger counts."""

from __future__ import annotations

import os

import pytest

from bench.studies import scaling


def test_more_server_cpus_than_the_machine_allows_is_refused(tmp_path, capsys) -> None:
    too_many = len(os.sched_getaffinity(0))  # n server CPUs need n + 1
    assert scaling.main(["--cpus", "1", str(too_many), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "need" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.real
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a server and a client CPU")
def test_one_server_cpu_runs_and_is_summarised(tmp_path) -> None:
    code = scaling.main(
        ["--cpus", "1", "--models", "prefork", "epoll", "--connections", "4", "--repeats", "1",
         "--duration", "0.3", "--warmup", "0.1", "--out", str(tmp_path), "--run-id", "s"]
    )  # fmt: skip
    assert code == 0
    text = (tmp_path / "s" / "scaling.md").read_text()
    for model in ("prefork", "epoll"):
        [line] = [x for x in text.splitlines() if x.startswith(f"| {model} | 4 | 1 |")]
        assert "| 1.00x |" in line and "of 1 |" in line
    assert (tmp_path / "s" / "cpus-1" / "report.md").is_file()
