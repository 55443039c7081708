"""What an embedder takes: the request limits of embedding.proto (1 to 256 texts,
each at most 32 KiB of UTF-8) and `check_texts`, which applies them."""

from __future__ import annotations

from collections.abc import Sequence

from vectoros.core.errors import InvalidInput

MAX_TEXTS = 256
MAX_TEXT_BYTES = 32 * 1024


def check_texts(texts: Sequence[str | bytes], field_name: str = "texts") -> list[str]:
    """Validate a request's texts and return them as `str`.

    Accepts `str` (a Python caller; a lone surrogate is not UTF-8) or `bytes`
    (the wire, before decoding). Raises `InvalidInput` naming the index:
    ``texts[3]: at most 32768 bytes of UTF-8, got 40000``. Empty strings are valid.
    """
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise InvalidInput(field_name, f"must hold 1 to {MAX_TEXTS} texts, got {len(texts)}")
    checked = []
    for index, text in enumerate(texts):
        where = f"{field_name}[{index}]"
        if isinstance(text, bytes):
            if len(text) > MAX_TEXT_BYTES:
                raise InvalidInput(where, f"at most {MAX_TEXT_BYTES} bytes of UTF-8, got {len(text)}")
            try:
                checked.append(text.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidInput(where, f"not valid UTF-8 (bad byte at offset {exc.start})") from None
            continue
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInput(where, f"not valid UTF-8 (lone surrogate at character {exc.start})") from None
        if size > MAX_TEXT_BYTES:
            raise InvalidInput(where, f"at most {MAX_TEXT_BYTES} bytes of UTF-8, got {size}")
        checked.append(text)
    return checked
