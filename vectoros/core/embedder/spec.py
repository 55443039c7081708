"""The `spec` of an embedder artifact (manifest kind "embedder", written by
`training.embedder`): its dataclasses and `parse_spec`, the strict check the
loader runs before it builds a session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vectoros.core.manifest import ManifestError

KIND = "embedder"
PRECISIONS = ("fp32", "int8")
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"


@dataclass(frozen=True)
class PrecisionSpec:
    file: str
    meets_bar: bool
    bar: Mapping[str, float]


@dataclass(frozen=True)
class EmbedderSpec:
    """`spec` of an embedder manifest (written by `training.embedder`)."""

    dimension: int
    max_tokens: int
    tokenizer: str
    default_precision: str
    precisions: Mapping[str, PrecisionSpec]
    source: Mapping[str, str]
    pooling: str = "mean"
    normalize: str = "l2"


_SPEC_KEYS = (
    "dimension", "max_tokens", "tokenizer", "pooling", "normalize", "default_precision", "precisions", "source",
)


def spec_error(key: str, rule: str) -> ManifestError:
    """The loader's error for a bad `spec` entry: ``spec.precisions.int8: ...``."""
    return ManifestError(f"spec.{key}: {rule}")


def parse_spec(manifest: Any) -> EmbedderSpec:
    """Validate an embedder manifest's `spec` strictly: exactly the known keys, the
    pooling this engine implements, every precision's file listed in `files`, and
    a default precision that met its fidelity bar. Raises `ManifestError`."""
    if manifest.kind != KIND:
        raise spec_error("kind", f"the embedder loader needs kind {KIND!r}, got {manifest.kind!r}")
    spec = manifest.spec
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    missing = [key for key in _SPEC_KEYS if key not in spec]
    if unknown:
        raise spec_error(unknown[0], "unknown key")
    if missing:
        raise spec_error(missing[0], "missing key")
    for key in ("dimension", "max_tokens"):
        value = spec[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise spec_error(key, "must be a positive integer")
    if spec["pooling"] != "mean":
        raise spec_error("pooling", f"only 'mean' is implemented, got {spec['pooling']!r}")
    if spec["normalize"] != "l2":
        raise spec_error("normalize", f"only 'l2' is implemented, got {spec['normalize']!r}")
    if spec["tokenizer"] not in manifest.files:
        raise spec_error("tokenizer", f"{spec['tokenizer']!r} is not listed in files")
    if not isinstance(spec["source"], dict) or not all(isinstance(v, str) for v in spec["source"].values()):
        raise spec_error("source", "must be an object of strings")
    precisions = spec["precisions"]
    if not isinstance(precisions, dict) or not precisions:
        raise spec_error("precisions", "must be a non-empty object")
    parsed = {}
    for name, entry in precisions.items():
        key = f"precisions.{name}"
        if name not in PRECISIONS:
            raise spec_error(key, f"unknown precision; known: {', '.join(PRECISIONS)}")
        if not isinstance(entry, dict) or set(entry) != {"file", "meets_bar", "bar"}:
            raise spec_error(key, 'must be {"file": str, "meets_bar": bool, "bar": {metric: number}}')
        if entry["file"] not in manifest.signature:
            raise spec_error(f"{key}.file", f"{entry['file']!r} is not an ONNX file of the manifest")
        if not isinstance(entry["meets_bar"], bool):
            raise spec_error(f"{key}.meets_bar", "must be true or false")
        if not isinstance(entry["bar"], dict):
            raise spec_error(f"{key}.bar", "must be an object")
        _check_signature(manifest.signature[entry["file"]], spec["dimension"], f"{key}.file")
        parsed[name] = PrecisionSpec(entry["file"], entry["meets_bar"], dict(entry["bar"]))
    default = spec["default_precision"]
    if default not in parsed:
        raise spec_error("default_precision", f"{default!r} is not one of precisions")
    if not parsed[default].meets_bar:
        raise spec_error("default_precision", f"{default!r} did not meet its fidelity bar")
    return EmbedderSpec(
        dimension=spec["dimension"],
        max_tokens=spec["max_tokens"],
        tokenizer=spec["tokenizer"],
        default_precision=default,
        precisions=parsed,
        source=dict(spec["source"]),
    )


def _check_signature(signature: Mapping[str, Any], dimension: int, key: str) -> None:
    inputs = [(t["name"], t["dtype"]) for t in signature["inputs"]]
    if inputs != [(name, "int64") for name in INPUT_NAMES]:
        raise spec_error(key, f"the graph must take int64 {', '.join(INPUT_NAMES)}, it takes {inputs}")
    outputs = signature["outputs"]
    if [t["name"] for t in outputs] != [OUTPUT_NAME] or outputs[0]["dtype"] != "float32":
        raise spec_error(key, f"the graph must output float32 {OUTPUT_NAME}")
    if outputs[0]["shape"][-1:] != [dimension]:
        raise spec_error(key, f"{OUTPUT_NAME} must have {dimension} columns, the graph says {outputs[0]['shape']}")
