"""The serving path must not load training-only libraries."""

import subprocess
import sys

TRAINING_ONLY = ("torch", "sentence_transformers", "transformers", "xgboost", "sklearn")


def test_server_imports_no_training_libraries():
    code = (
        "import sys, server.app, vectoros.cli; "
        "vectoros.cli.build_parser(); "
        f"print([m for m in {TRAINING_ONLY!r} if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
