"""An artifact's files checked against its manifest: checksums, ONNX signatures
and golden outputs run in onnxruntime, and `build_manifest`, which fills all of
them in for training code."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vectoros.core.manifest.format import DTYPES, FORMAT, MANIFEST_FILE, ORT_DTYPES, Manifest, ManifestError

_CHUNK = 1 << 20


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """`{relative posix path: {"sha256": hex, "bytes": int}}` for every file under
    `directory` except the top-level `manifest.json`, sorted by path. This is what
    a manifest's `files` must hold."""
    root = Path(directory)
    found: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            path = Path(dirpath) / filename
            relative = path.relative_to(root).as_posix()
            if relative == MANIFEST_FILE:
                continue
            if path.is_symlink() or not path.is_file():
                raise ManifestError(f"files.{relative}: must be a regular file")
            found[relative] = {"sha256": _sha256_file(path), "bytes": path.stat().st_size}
    return dict(sorted(found.items()))


def verify_files(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Check that `directory` holds exactly the manifest's files with their sizes and
    SHA-256 sums. Raises `ManifestError` naming the first missing, extra or
    tampered file."""
    root = Path(directory)
    listed = set(manifest.files)
    present: set[str] = set()
    for dirpath, _dirnames, filenames in os.walk(root):
        for filename in filenames:
            relative = (Path(dirpath) / filename).relative_to(root).as_posix()
            if relative != MANIFEST_FILE:
                present.add(relative)
    for path in sorted(listed - present):
        raise ManifestError(f"files.{path}: missing from {root}")
    for path in sorted(present - listed):
        raise ManifestError(f"files.{path}: not listed in the manifest")
    for path, entry in sorted(manifest.files.items()):
        file = root / path
        if file.is_symlink() or not file.is_file():
            raise ManifestError(f"files.{path}: must be a regular file")
        # Size first: a cheap check that catches truncated copies without hashing.
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise ManifestError(
                f"files.{path}: size {size} bytes, manifest says {entry['bytes']} (tampered or truncated)"
            )
        if _sha256_file(file) != entry["sha256"]:
            raise ManifestError(f"files.{path}: SHA-256 does not match the manifest (tampered)")


# --- onnxruntime -----------------------------------------------------------------


def _session(path: Path):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    # A throw-away session: one thread, and no arena that would keep the peak.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ManifestError(f"files.{path.name}: onnxruntime cannot load it ({exc})") from None


def _tensor_entries(args) -> list[dict[str, Any]]:
    entries = []
    for arg in args:
        dtype = ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise ManifestError(f"{arg.name}: unsupported ONNX type {arg.type}")
        shape = [dim if isinstance(dim, int) else None for dim in (arg.shape or [])]
        entries.append({"name": arg.name, "dtype": dtype, "shape": shape})
    return entries


def onnx_signature(onnx_path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """`{"inputs": [...], "outputs": [...]}` of an ONNX file, as onnxruntime sees it:
    the value for one entry of a manifest's `signature`."""
    session = _session(Path(onnx_path))
    return {
        "inputs": _tensor_entries(session.get_inputs()),
        "outputs": _tensor_entries(session.get_outputs()),
    }


def make_golden(
    onnx_path: str | os.PathLike[str],
    inputs: Mapping[str, Any],
    *,
    atol: float = 1e-5,
) -> dict[str, Any]:
    """Run `inputs` (name -> array) through the ONNX file with onnxruntime and return
    the manifest `golden` entry for it. The outputs are onnxruntime's: compare them
    with the training framework's own predictions before trusting them."""
    import numpy as np

    session = _session(Path(onnx_path))
    feeds = {name: np.asarray(value) for name, value in inputs.items()}
    names = [out.name for out in session.get_outputs()]
    results = session.run(names, feeds)
    return {
        "inputs": {
            name: {"dtype": _dtype_name(array), "data": array.tolist()}
            for name, array in feeds.items()
        },
        "outputs": {name: np.asarray(value).tolist() for name, value in zip(names, results, strict=True)},
        "atol": float(atol),
    }


def _dtype_name(array) -> str:
    name = "str" if array.dtype.kind in "US" else str(array.dtype)
    if name not in DTYPES:
        raise ManifestError(f"golden input dtype {array.dtype} is not supported")
    return name


def run_golden(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Load every ONNX file of the artifact with onnxruntime, check it against the
    manifest's `signature`, feed the golden inputs and compare the outputs within the
    golden `atol`. Raises `ManifestError` naming the file and tensor."""
    import numpy as np

    root = Path(directory)
    for path in manifest.onnx_files:
        session = _session(root / path)
        actual_signature = {
            "inputs": _tensor_entries(session.get_inputs()),
            "outputs": _tensor_entries(session.get_outputs()),
        }
        for side in ("inputs", "outputs"):
            if actual_signature[side] != manifest.signature[path][side]:
                raise ManifestError(
                    f"signature.{path}.{side}: the model has {actual_signature[side]}"
                )
        case = manifest.golden[path]
        input_names = [entry["name"] for entry in actual_signature["inputs"]]
        if sorted(case["inputs"]) != sorted(input_names):
            raise ManifestError(f"golden.{path}.inputs: must feed exactly {input_names}")
        output_names = [entry["name"] for entry in actual_signature["outputs"]]
        for name in case["outputs"]:
            if name not in output_names:
                raise ManifestError(f"golden.{path}.outputs.{name}: the model has no such output")
        try:
            feeds = {
                name: np.asarray(tensor["data"], dtype=object if tensor["dtype"] == "str" else tensor["dtype"])
                for name, tensor in case["inputs"].items()
            }
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"golden.{path}.inputs: not a regular array ({exc})") from None
        wanted = list(case["outputs"])
        try:
            results = session.run(wanted, feeds)
        except Exception as exc:  # onnxruntime's own exception types
            raise ManifestError(f"golden.{path}: onnxruntime failed on the golden inputs ({exc})") from None
        atol = float(case["atol"])
        for name, result in zip(wanted, results, strict=True):
            _compare(f"golden.{path}.outputs.{name}", np.asarray(result), case["outputs"][name], atol)


def _compare(key: str, actual, expected_data: list, atol: float) -> None:
    import numpy as np

    try:
        expected = np.asarray(expected_data)
    except ValueError:
        raise ManifestError(f"{key}: not a regular array") from None
    if actual.shape != expected.shape:
        raise ManifestError(f"{key}: shape {list(actual.shape)}, golden has {list(expected.shape)}")
    if expected.dtype.kind in "USO" or actual.dtype.kind in "USO":
        if not np.array_equal(actual.astype(str), expected.astype(str)):
            raise ManifestError(f"{key}: differs from the golden output")
        return
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = float(difference.max()) if difference.size else 0.0
    if not (worst <= atol):  # also true for NaN
        raise ManifestError(f"{key}: differs from the golden output by {worst:.3g} (atol {atol:g})")


# --- building --------------------------------------------------------------------


def build_manifest(
    directory: str | os.PathLike[str],
    *,
    name: str,
    kind: str,
    metrics: Mapping[str, float],
    training_data: Mapping[str, Any],
    spec: Mapping[str, Any],
    golden_inputs: Mapping[str, Mapping[str, Any]],
    atol: float = 1e-5,
    created_at: datetime | None = None,
    package_version: str | None = None,
) -> Manifest:
    """Build (but not write) the manifest of the artifact in `directory`: checksums of
    every file, the signature and golden outputs of every ONNX file computed with
    onnxruntime. `golden_inputs` maps each ONNX file to its inputs (name -> array).
    Raises `ManifestError` if the result breaks the format."""
    if package_version is None:
        from vectoros import __version__ as package_version
    root = Path(directory)
    files = file_checksums(root)
    onnx_files = [path for path in files if path.endswith(".onnx")]
    created = (created_at or datetime.now(UTC)).astimezone(UTC)
    return Manifest.from_dict(
        {
            "format": FORMAT,
            "name": name,
            "version": None,
            "kind": kind,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "package_version": package_version,
            "files": files,
            "signature": {path: onnx_signature(root / path) for path in onnx_files},
            "metrics": {key: float(value) for key, value in metrics.items()},
            "training_data": dict(training_data),
            "golden": {
                path: make_golden(root / path, golden_inputs[path], atol=atol)
                for path in onnx_files
                if path in golden_inputs
            },
            "spec": dict(spec),
        }
    )
