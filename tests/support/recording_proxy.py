"""A TCP proxy on 127.0.0.1 that records every byte the server sends back, to scan whole sessions for secrets."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlsplit

from tests.support.fake_openai import free_port


class RecordingProxy:
    """Forwards 127.0.0.1:<port> to `target_url`; `received` holds all server-to-client bytes, HTTP framing and SSE
    included. Below HTTP, so nothing the client library does (streaming, polling, login cookies) escapes it."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._chunks: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def received(self) -> bytes:
        return b"".join(self._chunks)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    self._chunks.append(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, record=False),
            self._pipe(server_reader, client_writer, record=True),
        )

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
