"""MLLP framing: <VT> message <FS><CR>.  Bytes only; nothing here reads the message."""

from __future__ import annotations

import asyncio

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
# A frame larger than this is refused and the connection closed (a runaway sender, not HL7).
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


class FramingError(ValueError):
    """The stream is not MLLP (data outside a block, or a block over the size limit)."""


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


async def read_frame(
    reader: asyncio.StreamReader, max_frame: int = DEFAULT_MAX_FRAME
) -> bytes | None:
    """The next block's payload, or None at a clean end of stream.

    Bytes before <VT> (line noise, keep-alive newlines) are skipped; a stream that ends inside a
    block raises FramingError so the caller can record what arrived.
    """
    while True:
        byte = await reader.read(1)
        if not byte:
            return None
        if byte == START_BLOCK:
            break
    try:
        payload = await reader.readuntil(END_BLOCK)
    except asyncio.IncompleteReadError as exc:
        raise FramingError(f"stream ended inside a block after {len(exc.partial)} bytes") from exc
    except asyncio.LimitOverrunError as exc:
        raise FramingError(f"block larger than the reader's limit ({exc.consumed} bytes)") from exc
    if len(payload) - 2 > max_frame:
        raise FramingError(f"block of {len(payload) - 2} bytes exceeds {max_frame}")
    return payload[:-2]
