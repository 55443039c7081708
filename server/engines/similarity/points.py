"""A deal as a stored point: the payload it is stored with (`deal_payload`; the
payload keys are the store interface's, `server.stores.base`) and the
fingerprint of its embedded text (`text_sha256`), which decides re-embedding."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from server.stores.base import DEAL_ID, INDUSTRY, OUTCOME, RECORD, STAGE, TEXT_SHA256, VALUE, WORKSPACE
from vectoros.core.deal_codec.payload import record_to_json
from vectoros.core.deal_text import TEMPLATE_VERSION
from vectoros.core.deals import DealRecord


def text_sha256(text: str) -> str:
    """Fingerprint of an embedded text: a new template version re-embeds even if
    the words happen to be the same."""
    return hashlib.sha256(f"{TEMPLATE_VERSION}\0{text}".encode()).hexdigest()


def deal_payload(workspace_id: str, record: DealRecord, text_hash: str) -> dict[str, Any]:
    return {
        WORKSPACE: workspace_id,
        DEAL_ID: record.deal_id,
        INDUSTRY: record.industry,
        STAGE: record.stage,
        OUTCOME: record.outcome.value,
        VALUE: float(record.value),
        TEXT_SHA256: text_hash,
        RECORD: record_to_json(record),
    }


def with_workspace(record: DealRecord, workspace_id: str) -> DealRecord:
    """The record as stored: in the request's workspace."""
    return record if record.workspace_id == workspace_id else replace(record, workspace_id=workspace_id)
