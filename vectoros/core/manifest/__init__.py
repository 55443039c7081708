"""The strict `manifest.json` of a model artifact (format 1): `format` (the type and its
validation), `artifact` (checksums, signatures, golden outputs, build_manifest).

A manifest has exactly the keys documented in docs/model-repository.md; an
unknown, missing or ill-typed key fails at load with a `ManifestError` naming
it, never later at request time. The `spec` section is opaque here: the loader
of the model's kind validates it.

Training code fills a manifest with `build_manifest` (or `file_checksums`,
`onnx_signature` and `make_golden` one by one) and writes it with
`Manifest.write`. Publishing and the server's registry check an artifact with
`verify_files` (checksums) and `run_golden` (onnxruntime on the stored inputs).
"""

from vectoros.core.manifest.artifact import (
    build_manifest,
    file_checksums,
    make_golden,
    onnx_signature,
    run_golden,
    verify_files,
)
from vectoros.core.manifest.format import (
    DTYPES,
    FORMAT,
    KINDS,
    MANIFEST_FILE,
    MANIFEST_KEYS,
    NAME_PATTERN,
    Manifest,
    ManifestError,
    metric_direction,
)

__all__ = [
    "DTYPES",
    "FORMAT",
    "KINDS",
    "MANIFEST_FILE",
    "MANIFEST_KEYS",
    "NAME_PATTERN",
    "Manifest",
    "ManifestError",
    "build_manifest",
    "file_checksums",
    "make_golden",
    "metric_direction",
    "onnx_signature",
    "run_golden",
    "verify_files",
]
