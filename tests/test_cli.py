"""The `graphorch` command end to end: every command in a subprocess against a temporary
database, with exit codes and --json output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

USER_MODULE = """
from pydantic import BaseModel
import graphorch as go


class Job(BaseModel):
    name: str
    size: int = 1
    result: str | None = None
    decision: str | None = None


def _result(s: Job) -> str | None:
    return s.result


graph = go.Graph("cli_job", state=Job)


@graph.plan
def work(s: Job) -> dict:
    if s.size < 0:
        raise ValueError("size must not be negative")
    return {"result": f"{s.name} x{s.size}"}


graph.end("done", output=_result)
graph.edge(go.START, "work").edge("work", "done")

gated = go.Graph("cli_gated", state=Job)
gated.plan("prepare", lambda s: {"result": "prepared"})
gated.approve("confirm", approvers={"lead"}, prompt="ship it?", decision="decision")
gated.plan("ship", lambda s: {"result": f"shipped {s.name}"})
gated.plan("drop", lambda s: {"result": "dropped"})
gated.end("done", output=_result)
gated.edge(go.START, "prepare").edge("prepare", "confirm")
gated.edge("confirm", "ship", when=go.approved).edge("confirm", "drop", when=go.rejected)
gated.edge("ship", "done").edge("drop", "done")
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GRAPHORCH_DB", None)
    return env


def gc(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m graphorch ARGS` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "graphorch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=120,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def one_clear_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The error is one line (plus an optional hint line), no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert len(lines) <= 2 and all(line.startswith("hint: ") for line in lines[1:]), proc.stderr
    return lines[0]


def in_process(
    args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> subprocess.CompletedProcess[str]:
    from graphorch.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("GRAPHORCH_DB", raising=False)
    code = main(args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a user module and a database holding the support demo's runs."""
    root = tmp_path_factory.mktemp("cli")
    (root / "jobs.py").write_text(textwrap.dedent(USER_MODULE))
    proc = gc("demo", "support", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def support_run(work: Path) -> str:
    runs = as_json(gc("runs", "--graph", "support", "--json", cwd=work))
    return str(runs[-1]["run_id"])


# -- help and demos -------------------------------------------------------------------------


def test_help_documents_every_command_and_the_exit_codes(tmp_path: Path) -> None:
    proc = gc("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("demo", "run", "runs", "show", "history", "resume", "fork", "approve"):
        assert word in proc.stdout
    for word in ("render", "audit", "prune", "exit codes", "waiting for approval"):
        assert word in proc.stdout
    for code in "01234":
        assert f"\n  {code}  " in proc.stdout


def test_demo_support_ran_offline_and_its_runs_are_listed(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = as_json(gc("runs", "--json", cwd=work))
    graphs = sorted(r["graph"] for r in runs)
    assert graphs == ["billing", "support", "support", "tech_triage"]
    assert {r["status"] for r in runs} == {"succeeded"}
    waiting = as_json(
        in_process(["runs", "--status", "waiting", "--json"], work, capsys, monkeypatch)
    )
    assert waiting == []
    text = in_process(["runs"], work, capsys, monkeypatch)
    assert text.returncode == 0 and "RUN ID" in text.stdout and "support" in text.stdout


@pytest.mark.slow
@pytest.mark.parametrize("example", ["research", "devops"])
def test_the_other_demos_complete_offline(example: str, tmp_path: Path) -> None:
    proc = gc("demo", example, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "step" in proc.stderr  # progress as it goes
    assert "succeeded" in proc.stdout
    if example == "research":
        assert "Sources:" in proc.stdout and "fact-check: unsupported" in proc.stderr
    else:
        assert "pending approval" in proc.stderr and "demo-oncall" in proc.stderr
    assert (tmp_path / "graphorch.db").is_file()


# -- reading -----------------------------------------------------------------------------------


def test_show_history_and_audit(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = support_run(work)
    show = as_json(gc("show", run_id, "--json", cwd=work))
    assert show["status"] == "succeeded" and show["state"]["category"] in ("refund", "bug")
    assert show["pending_approvals"] == [] and len(show["children"]) == 1
    text = in_process(["show", run_id], work, capsys, monkeypatch)
    assert text.returncode == 0 and "status   succeeded" in text.stdout
    history = as_json(in_process(["history", run_id, "--json"], work, capsys, monkeypatch))
    assert [c["seq"] for c in history] == [0, 1, 2, 3]
    assert history[1]["nodes"] == ["triage"]
    audit = gc("audit", run_id, "--verify", "--json", cwd=work)
    assert audit.returncode == 0
    data = as_json(audit)
    assert data["verify"]["ok"] is True and data["rows"]
    assert data["rows"][0]["event"]["kind"] == "run_started"
    text = in_process(["audit", run_id, "--verify"], work, capsys, monkeypatch)
    assert "hash chain intact" in text.stdout and "run_started" in text.stdout
    text = in_process(["history", run_id], work, capsys, monkeypatch)
    assert text.stdout.startswith("SEQ") and "triage" in text.stdout


def test_render_by_extension_with_a_run_overlay(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = support_run(work)
    for name in ("g.dot", "g.mmd"):
        proc = gc(
            "render", "graphorch.examples.support:graph", "--run", run_id, "-o", name, cwd=work
        )
        assert proc.returncode == 0, proc.stderr
    assert (work / "g.dot").read_text().startswith("digraph")
    assert "flowchart" in (work / "g.mmd").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_render_svg(work: Path) -> None:
    proc = gc("render", "graphorch.examples.research:graph", "-o", "r.svg", "--json", cwd=work)
    assert proc.returncode == 0 and as_json(proc)["path"] == "r.svg"
    assert "<svg" in (work / "r.svg").read_text()


# -- running user graphs ------------------------------------------------------------------------


def test_run_with_json_input_and_an_input_file(work: Path) -> None:
    proc = gc("run", "jobs:graph", "--input", '{"name": "build", "size": 3}', "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    data = as_json(proc)
    assert data["status"] == "succeeded" and data["output"] == "build x3"
    assert "step" in proc.stderr  # progress on stderr
    (work / "in.json").write_text('{"name": "file"}')
    proc = gc("run", "jobs:graph", "--input", "@in.json", cwd=work)
    assert proc.returncode == 0 and "output: file x1" in proc.stdout


def test_a_failed_run_exits_1_and_fork_with_set_fixes_it(work: Path) -> None:
    proc = gc("run", "jobs:graph", "--input", '{"name": "bad", "size": -1}', "--json", cwd=work)
    assert proc.returncode == 1
    failed = as_json(proc)
    assert failed["status"] == "failed" and "negative" in failed["reason"]
    fork = gc("fork", failed["run_id"], "--at", "0", "--set", "size=2", "--json", cwd=work)
    assert fork.returncode == 0, fork.stderr
    forked = as_json(fork)
    assert forked["run_id"] != failed["run_id"] and forked["output"] == "bad x2"
    again = gc("resume", failed["run_id"], "--json", cwd=work)  # a stopped run comes back as is
    assert again.returncode == 1 and as_json(again)["status"] == "failed"


def test_waiting_for_approval_exits_3_then_approve_resumes_it(work: Path) -> None:
    proc = gc("run", "jobs:gated", "--input", '{"name": "api"}', "--json", cwd=work)
    assert proc.returncode == 3, proc.stderr
    waiting = as_json(proc)
    run_id = waiting["run_id"]
    assert waiting["status"] == "waiting"
    [pending] = waiting["pending_approvals"]
    assert pending["approvers"] == ["lead"] and pending["prompt"] == "ship it?"
    show = as_json(gc("show", run_id, "--json", cwd=work))
    assert show["current_nodes"] == ["confirm"] and len(show["pending_approvals"]) == 1
    refused = gc("approve", run_id, "--by", "mallory", cwd=work)
    assert refused.returncode == 2 and "mallory" in one_clear_line(refused)
    # the graph's import path was remembered: no --graph needed in a new process
    done = gc("approve", run_id, "--by", "lead", "--comment", "ok", "--json", cwd=work)
    assert done.returncode == 0, done.stderr
    assert as_json(done)["output"] == "shipped api"
    other = as_json(gc("run", "jobs:gated", "--input", '{"name": "db"}', "--json", cwd=work))
    rejected = gc("approve", other["run_id"], "--by", "lead", "--reject", "--json", cwd=work)
    assert rejected.returncode == 0 and as_json(rejected)["output"] == "dropped"


def test_prune_checkpoints_and_old_runs(work: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    first = as_json(
        gc("run", "jobs:graph", "--db", db, "--input", '{"name": "x"}', "--json", cwd=work)
    )
    proc = gc("prune", first["run_id"], "--keep-last", "1", "--db", db, "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert as_json(proc)["checkpoints_deleted"] == 2
    proc = gc("prune", "--older-than", "0", "--compact", "--db", db, "--json", cwd=work)
    assert as_json(proc) == {"runs_deleted": 1, "checkpoints_deleted": 0, "compacted": True}
    assert as_json(gc("runs", "--db", db, "--json", cwd=work)) == []
    bad = gc("prune", "--db", db, cwd=work)
    assert bad.returncode == 2 and "prune needs" in one_clear_line(bad)


def test_the_database_comes_from_graphorch_db(work: Path, tmp_path: Path) -> None:
    env = {**_env(), "GRAPHORCH_DB": str(tmp_path / "env.db")}
    proc = gc("run", "jobs:graph", "--input", '{"name": "e"}', cwd=work, env=env)
    assert proc.returncode == 0 and (tmp_path / "env.db").is_file()
    assert len(as_json(gc("runs", "--json", cwd=work, env=env))) == 1


# -- bad input: one clear line, exit code 2 --------------------------------------------------------
# One case of each kind in a subprocess; the variations in-process through main() (same code).


def test_bad_input_in_a_subprocess(work: Path, tmp_path: Path) -> None:
    for args, expected in [
        (["show", "no-such-run"], "no-such-run"),
        (["run", "jobs:graph", "--input", "{not json"], "not valid JSON"),
        (["run", "no_such_module:graph"], "cannot import module 'no_such_module'"),
    ]:
        proc = gc(*args, cwd=work)
        assert proc.returncode == 2, proc.stderr
        assert expected in one_clear_line(proc)
    proc = gc("runs", "--db", "absent.db", cwd=tmp_path)
    assert proc.returncode == 2 and "no database at absent.db" in one_clear_line(proc)
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.parametrize("command", ["history", "audit", "resume", "fork", "approve"])
def test_an_unknown_run_id(
    command: str, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {"fork": ["--at", "0"], "approve": ["--by", "lead"]}.get(command, [])
    proc = in_process([command, "no-such-run", *extra], work, capsys, monkeypatch)
    assert proc.returncode == 2
    assert "no-such-run" in one_clear_line(proc)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "jobs:graph", "--input", "@missing.json"], "cannot read"),
        (["run", "jobs:graph", "--input", "[1, 2]"], "JSON object"),
        (["run", "jobs:graph", "--input", '{"size": 1}'], "name"),
        (["run", "jobs:nothing"], "no attribute 'nothing'"),
        (["run", "jobs"], "MODULE:GRAPH"),
        (["render", "no_such_module:graph", "-o", "x.dot"], "cannot import"),
        (["fork", "x", "--at", "0", "--set", "size=oops"], "not valid JSON"),
        (["fork", "x", "--at", "0", "--set", "size"], "FIELD=JSON"),
        (["prune", "--keep-last", "2"], "needs the RUN_ID"),
    ],
)
def test_bad_input(
    args: list[str],
    expected: str,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = in_process(args, work, capsys, monkeypatch)
    assert proc.returncode == 2, proc.stderr
    assert expected in one_clear_line(proc)


@pytest.mark.parametrize(
    "command", [["show", "x"], ["history", "x"], ["audit", "x"], ["prune", "--compact"]]
)
def test_a_missing_database_is_not_created(
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = in_process([*command, "--db", "absent.db"], tmp_path, capsys, monkeypatch)
    assert proc.returncode == 2
    assert "no database at absent.db" in one_clear_line(proc)
    assert not (tmp_path / "absent.db").exists()


def test_usage_errors_exit_2_and_debug_shows_the_traceback(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert in_process(["runs", "--status", "bogus"], work, capsys, monkeypatch).returncode == 2
    assert in_process(["nonsense"], work, capsys, monkeypatch).returncode == 2
    proc = gc("show", "no-such-run", "--debug", cwd=work)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


# -- docs -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_docs_build_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    root = Path(__file__).resolve().parents[1]
    if not (root / "docs" / "performance.md").is_file():
        pytest.skip("docs/performance.md (written by the bench) is not there yet; the nav needs it")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
