"""The bulk export's response: PostgreSQL's COPY output passed to the client as it comes."""

from __future__ import annotations

from starlette.responses import StreamingResponse
from starlette.types import Send

from api.deps import ExportConnections
from shared.prices import PriceFilter, copy_prices_csv

SEND_BATCH_BYTES = 128 * 1024


class CsvExportResponse(StreamingResponse):
    """`text/csv` streamed from COPY on an export connection, chunk by chunk.

    StreamingResponse cancels `stream_response` when the client disconnects; the cancellation
    reaches the COPY and the export connection is terminated then, not when the data runs out.
    The status line waits for COPY's first chunk (its header line), so a failure before it
    still answers in the JSON envelope.
    """

    media_type = "text/csv"

    def __init__(self, exports: ExportConnections, filters: PriceFilter, filename: str) -> None:
        super().__init__(
            content=[],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
        self._exports = exports
        self._filters = filters

    async def stream_response(self, send: Send) -> None:
        """Send the headers with the first chunk, the rest in batches as COPY hands it over."""
        started = False
        batch = bytearray()

        async def forward(chunk: bytes) -> None:
            nonlocal started
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self.status_code,
                        "headers": self.raw_headers,
                    }
                )
                started = True
            # asyncpg hands over what one socket read brought (about 10 KiB); each send costs
            # the same whatever its size, so they go out in batches. A slow client makes the
            # send wait, and asyncpg stops reading from PostgreSQL meanwhile: memory stays at
            # a batch or two whatever the export's size.
            batch.extend(chunk)
            if len(batch) >= SEND_BATCH_BYTES:
                await send({"type": "http.response.body", "body": bytes(batch), "more_body": True})
                batch.clear()

        async with self._exports.connection() as connection:
            await copy_prices_csv(connection, self._filters, forward)
        await send({"type": "http.response.body", "body": bytes(batch), "more_body": False})
