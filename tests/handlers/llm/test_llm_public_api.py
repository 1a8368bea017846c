"""The public surface of handlers.llm."""

from __future__ import annotations

import subprocess
import sys

import handlers.llm


def test_every_public_name_is_importable() -> None:
    for name in handlers.llm.__all__:
        assert hasattr(handlers.llm, name), name
    assert sorted(handlers.llm.__all__) == sorted(set(handlers.llm.__all__))


def test_importing_the_package_does_not_import_litellm() -> None:
    code = "import sys, handlers.llm; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
