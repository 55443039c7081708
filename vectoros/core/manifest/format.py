"""The manifest format: its constants, `ManifestError`, `Manifest` and the strict
validation of every key (docs/model-repository.md); which way each metric is
better (`metric_direction`)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from vectoros.core.errors import FailedPrecondition

MANIFEST_FILE = "manifest.json"
FORMAT = 1
KINDS = ("scorer", "embedder")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# ONNX tensor element types as onnxruntime names them, and the short names the
# manifest uses (NumPy's).
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}
DTYPES = tuple(ORT_DTYPES.values())



class ManifestError(FailedPrecondition):
    """An artifact or its manifest breaks the format; the message names the key or file."""


@dataclass(frozen=True)
class Manifest:
    """One artifact's manifest. Nested sections are plain JSON values: read them, do
    not mutate them (use `dataclasses.replace` / `with_version` for a changed copy)."""

    format: int
    name: str
    version: int | None
    kind: str
    created_at: str
    package_version: str
    files: dict[str, dict[str, Any]]
    signature: dict[str, dict[str, Any]]
    metrics: dict[str, float]
    training_data: dict[str, Any]
    golden: dict[str, dict[str, Any]]
    spec: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read and validate a manifest. `path` is the file or the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ManifestError(f"{path}: no manifest") from None
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            return cls.loads(text)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc.message}") from None

    @classmethod
    def loads(cls, text: str) -> Manifest:
        """Parse and validate manifest JSON text."""
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Validate a decoded JSON object and build the manifest from it."""
        _validate(data)
        assert isinstance(data, dict)
        # A deep copy through JSON, so that the caller's objects are not shared.
        return cls(**json.loads(json.dumps(data)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """The manifest as JSON text (sorted keys, indented, trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Validate and write `manifest.json` into `directory`; returns its path."""
        _validate(self.to_dict())
        path = Path(directory) / MANIFEST_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    def with_version(self, version: int) -> Manifest:
        return replace(self, version=version)

    @property
    def created_time(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    @property
    def onnx_files(self) -> tuple[str, ...]:
        return tuple(name for name in sorted(self.files) if name.endswith(".onnx"))


MANIFEST_KEYS = tuple(f.name for f in fields(Manifest))


# --- validation ----------------------------------------------------------------


def _reject_constant(token: str) -> None:
    raise ManifestError(f"not valid JSON ({token} is not allowed)")


def _fail(key: str, rule: str) -> ManifestError:
    return ManifestError(f"{key}: {rule}")


def _exact_keys(obj: object, key: str, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(key or "manifest", "must be an object")
    prefix = f"{key}." if key else ""
    for name in obj:
        if name not in required:
            raise _fail(f"{prefix}{name}", "unknown key")
    for name in required:
        if name not in obj:
            raise _fail(f"{prefix}{name}", "missing key")
    return obj


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _str(value: object, key: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise _fail(key, "must be a string" if empty else "must be a non-empty string")
    return value


def _object(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(key, "must be an object")
    return value


def _check_relative_path(path: str, key: str) -> None:
    parts = PurePosixPath(path).parts
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or not parts
    ):
        raise _fail(key, "must be a relative POSIX path inside the artifact")
    if path == MANIFEST_FILE:
        raise _fail(key, f"{MANIFEST_FILE} does not list itself")


def _validate(data: object) -> None:
    data = _exact_keys(data, "", MANIFEST_KEYS)

    fmt = data["format"]
    if not _is_int(fmt) or fmt != FORMAT:
        raise _fail("format", f"must be {FORMAT}")
    name = _str(data["name"], "name")
    if not NAME_PATTERN.match(name):
        raise _fail("name", "must match [a-z][a-z0-9_-]{0,63}")
    version = data["version"]
    if version is not None and (not _is_int(version) or version < 1):
        raise _fail("version", "must be null or a positive integer")
    kind = _str(data["kind"], "kind")
    if kind not in KINDS:
        raise _fail("kind", f"must be one of {', '.join(KINDS)}")
    created_at = _str(data["created_at"], "created_at")
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        raise _fail("created_at", "must be an ISO 8601 time") from None
    if created.utcoffset() is None or created.utcoffset().total_seconds() != 0:
        raise _fail("created_at", "must be in UTC with an explicit offset (Z or +00:00)")
    _str(data["package_version"], "package_version")

    files = _object(data["files"], "files")
    if not files:
        raise _fail("files", "must list at least one file")
    for path, entry in files.items():
        key = f"files.{path}"
        _check_relative_path(path, key)
        entry = _exact_keys(entry, key, ("sha256", "bytes"))
        if not isinstance(entry["sha256"], str) or not _SHA256.match(entry["sha256"]):
            raise _fail(f"{key}.sha256", "must be 64 lowercase hex digits")
        if not _is_int(entry["bytes"]) or entry["bytes"] < 0:
            raise _fail(f"{key}.bytes", "must be an integer >= 0")
    onnx_files = sorted(path for path in files if path.endswith(".onnx"))

    signature = _object(data["signature"], "signature")
    _same_files(signature, onnx_files, "signature")
    for path, sig in signature.items():
        key = f"signature.{path}"
        sig = _exact_keys(sig, key, ("inputs", "outputs"))
        for side in ("inputs", "outputs"):
            tensors = sig[side]
            if not isinstance(tensors, list) or not tensors:
                raise _fail(f"{key}.{side}", "must be a non-empty list")
            seen: set[str] = set()
            for i, tensor in enumerate(tensors):
                tkey = f"{key}.{side}[{i}]"
                tensor = _exact_keys(tensor, tkey, ("name", "dtype", "shape"))
                tname = _str(tensor["name"], f"{tkey}.name")
                if tname in seen:
                    raise _fail(f"{tkey}.name", f"duplicate tensor name {tname!r}")
                seen.add(tname)
                if tensor["dtype"] not in DTYPES:
                    raise _fail(f"{tkey}.dtype", f"must be one of {', '.join(DTYPES)}")
                shape = tensor["shape"]
                if not isinstance(shape, list) or not all(
                    dim is None or (_is_int(dim) and dim >= 0) for dim in shape
                ):
                    raise _fail(f"{tkey}.shape", "must be a list of integers >= 0 or null")

    metrics = _object(data["metrics"], "metrics")
    for metric, value in metrics.items():
        _str(metric, "metrics")
        if not _is_number(value):
            raise _fail(f"metrics.{metric}", "must be a finite number")

    training = _exact_keys(data["training_data"], "training_data", ("sha256", "rows", "description"))
    if not isinstance(training["sha256"], str) or not _SHA256.match(training["sha256"]):
        raise _fail("training_data.sha256", "must be 64 lowercase hex digits")
    if not _is_int(training["rows"]) or training["rows"] < 0:
        raise _fail("training_data.rows", "must be an integer >= 0")
    _str(training["description"], "training_data.description", empty=True)

    golden = _object(data["golden"], "golden")
    _same_files(golden, onnx_files, "golden")
    for path, case in golden.items():
        key = f"golden.{path}"
        case = _exact_keys(case, key, ("inputs", "outputs", "atol"))
        inputs = _object(case["inputs"], f"{key}.inputs")
        if not inputs:
            raise _fail(f"{key}.inputs", "must not be empty")
        for tname, tensor in inputs.items():
            tkey = f"{key}.inputs.{tname}"
            tensor = _exact_keys(tensor, tkey, ("dtype", "data"))
            if tensor["dtype"] not in DTYPES:
                raise _fail(f"{tkey}.dtype", f"must be one of {', '.join(DTYPES)}")
            if not isinstance(tensor["data"], list):
                raise _fail(f"{tkey}.data", "must be a (nested) list")
        outputs = _object(case["outputs"], f"{key}.outputs")
        if not outputs:
            raise _fail(f"{key}.outputs", "must not be empty")
        for tname, values in outputs.items():
            if not isinstance(values, list):
                raise _fail(f"{key}.outputs.{tname}", "must be a (nested) list")
        if not _is_number(case["atol"]) or case["atol"] < 0:
            raise _fail(f"{key}.atol", "must be a finite number >= 0")

    _object(data["spec"], "spec")


def _same_files(section: dict[str, Any], onnx_files: list[str], key: str) -> None:
    for path in section:
        if path not in onnx_files:
            raise _fail(f"{key}.{path}", "is not an .onnx file listed in files")
    for path in onnx_files:
        if path not in section:
            raise _fail(f"{key}.{path}", "missing key (every .onnx file needs one)")


_HIGHER = ("roc_auc", "auc", "pr_auc", "average_precision", "accuracy", "precision",
           "recall", "f1", "mrr", "ndcg", "map")
_HIGHER_PREFIXES = ("cosine", "recall_at_", "precision_at_", "ndcg_at_", "hit_rate")
_LOWER = ("brier", "log_loss", "calibration_error", "ece", "mae", "mse", "rmse")
_LOWER_PREFIXES = ("latency", "brier_", "log_loss_", "ece_", "calibration_error_")


def metric_direction(name: str) -> Literal["higher", "lower"] | None:
    """Whether a larger value of the metric is better ("higher"), worse ("lower"), or
    unknown (None: such a metric is shown but never compared)."""
    if name in _HIGHER or name.startswith(_HIGHER_PREFIXES):
        return "higher"
    if name in _LOWER or name.startswith(_LOWER_PREFIXES):
        return "lower"
    return None
