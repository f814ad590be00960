"""The README's example is real code: it runs and prints what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs_and_prints_what_it_claims() -> None:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    example = blocks[0]
    claimed = re.search(r"print\(.*\)\s+# (.+)", example)
    assert claimed is not None
    out = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == claimed.group(1).strip()


def test_readme_gives_the_two_fresh_machine_commands() -> None:
    text = README.read_text()
    assert 'pip install -e ".[dev]" && pytest' in text
    assert "pip install -e . && graphorch demo" in text


def test_quickstart_demo_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "graphorch.examples.quickstart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "succeeded: Your refund is on its way." in out.stdout
    assert "succeeded: Thanks, we filed a bug." in out.stdout


def test_readme_diagram_is_the_one_the_project_draws() -> None:
    import graphorch as go
    from graphorch.examples import support

    text = README.read_text()
    blocks = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no diagram"
    assert blocks[0].strip() == go.to_mermaid(support.graph, expand_delegates=True).strip()
