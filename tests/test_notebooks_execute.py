"""Execute every notebook in notebooks/ top to bottom in a fresh kernel, and check that
the key outputs are there (an SVG, the final state, the forked run, the denial).

Needs the `notebook` extra (nbclient, nbformat, ipykernel); skipped without it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
CELL_TIMEOUT = 60  # seconds per cell
KERNEL = "python3"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``python3`` kernelspec for this very interpreter, first on JUPYTER_PATH.

    Returns the working directory the notebooks run in.
    """
    from ipykernel.kernelspec import install

    prefix = tmp_path / "jupyter-prefix"
    install(kernel_name=KERNEL, prefix=str(prefix))
    spec_dir = prefix / "share" / "jupyter" / "kernels" / KERNEL
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    # without it jupyter_core warns (DeprecationWarning) that it will move to platformdirs
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


def execute(name: str, workdir: Path) -> tuple[Any, Exception | None]:
    """Run the notebook in a fresh kernel: the executed notebook, and the error of the
    cell that failed (the run stops there), if any."""
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # notebooks are committed without outputs
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name} has outputs"
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        return nb, err
    return nb, None


def outputs(nb: Any, *, errors: bool = False) -> list[str]:
    """Every code cell's outputs as one text each (all mimetypes and streams joined)."""
    texts: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts: list[str] = []
        for out in cell.outputs:
            if out.output_type == "error":
                assert errors, f"error output: {out.ename}: {out.evalue}"
                continue
            if out.output_type == "stream":
                parts.append(out.text)
            else:
                parts.extend(v for v in out.get("data", {}).values() if isinstance(v, str))
        texts.append("\n".join(parts))
    return texts


def ran(name: str, workdir: Path) -> list[str]:
    nb, error = execute(name, workdir)
    if error is not None:
        raise error
    return outputs(nb)


def test_the_notebooks_are_the_ones_tested() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01-quickstart.ipynb",
        "02-resume-and-backtrack.ipynb",
        "03-approvals-and-guardrails.ipynb",
    ]


def test_01_quickstart(kernel_env: Path) -> None:
    texts = ran("01-quickstart.ipynb", kernel_env)
    everything = "\n".join(texts)
    if shutil.which("dot") is not None:
        assert "<svg" in everything  # the graph rendered inline
    else:
        assert "```mermaid" in everything
    assert "flowchart TD" in everything  # the Mermaid text printed
    assert "'Your refund is on its way.'" in everything  # result.output
    assert "reply='Your refund is on its way.'" in everything  # result.state
    assert "reply='Thanks, we filed a bug.'" in texts[-1]  # the stepper's final state
    assert "state change" in everything  # a step's diff table


def test_02_resume_and_backtrack(kernel_env: Path) -> None:
    texts = ran("02-resume-and-backtrack.ipynb", kernel_env)
    everything = "\n".join(texts)
    assert "locked:" in everything and "is being advanced by" in everything
    assert "What owls are. Where owls live. [approved (6 words)]" in everything
    # the fork's result, with the patched outline
    assert "Owls hunt at night. Owls swallow prey whole. [approved (8 words)]" in everything
    assert "now following fork" in everything and "left intact" in everything
    assert "<Stepper run " in everything and "succeeded" in everything
    assert not list(kernel_env.iterdir())  # the database went to a temp dir


def test_03_approvals_and_guardrails(kernel_env: Path) -> None:
    nb, error = execute("03-approvals-and-guardrails.ipynb", kernel_env)
    if error is not None:
        raise error
    texts = outputs(nb, errors=False)
    everything = "\n".join(texts)
    assert "PolicyDeniedError: role 'support-bot' may not call 'issue_refund'" in everything
    assert "PolicyDeniedError: 'issue_refund' is destructive and the run is read-only" in everything
    audit = next(t for t in texts if "tool calls" in t)
    assert "lookup_order" in audit and "succeeded" in audit
    assert "issue_refund" in audit and "denied" in audit and "role" in audit
    assert "refused:" in everything and "'intern' may not decide" in everything
    assert "'refunded 80 for C-9'" in everything
    assert "approval_decided" in everything
