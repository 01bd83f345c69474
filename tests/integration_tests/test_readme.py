"""The README's Python example runs as written, on the embedded model."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"


def test_readme_python_example_runs(tmp_path: Path) -> None:
    example = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert example, "README has no Python API example"
    script = tmp_path / "example.py"
    script.write_text(example.group(1))

    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= 4  # the answer, then one line per proposal
    assert sum(" local:smollm2 " in line for line in lines) == 3
