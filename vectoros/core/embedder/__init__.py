"""The embedder artifact, shared by serving and training: `spec` (the manifest's
`spec` and its strict parse), `texts` (request limits), `model` (the ONNX model and its loader)."""

from vectoros.core.embedder.model import EmbedBatchResult, EmbedderModel, EmbedderSettings, Tokenized, load_embedder
from vectoros.core.embedder.spec import (
    INPUT_NAMES,
    KIND,
    OUTPUT_NAME,
    PRECISIONS,
    EmbedderSpec,
    PrecisionSpec,
    parse_spec,
)
from vectoros.core.embedder.texts import MAX_TEXT_BYTES, MAX_TEXTS, check_texts

__all__ = [
    "INPUT_NAMES",
    "KIND",
    "MAX_TEXTS",
    "MAX_TEXT_BYTES",
    "OUTPUT_NAME",
    "PRECISIONS",
    "EmbedBatchResult",
    "EmbedderModel",
    "EmbedderSettings",
    "EmbedderSpec",
    "PrecisionSpec",
    "Tokenized",
    "check_texts",
    "load_embedder",
    "parse_spec",
]
