"""A zstd archive's decompressed bytes, decoded in this process (libzstd through the ``zstandard`` package).

The node's ``zstd -q -d -c`` (pve-storage ``PVE/Storage.pm`` ``decompressor_info``) costs a process, two
pipes and three threads per archive: over a thousand small archives that is most of the time. libzstd in
process checks the same things the tool does: each frame's content checksum (XXH64, which vzdump leaves on:
pve-manager ``PVE/VZDump.pm`` ``compressor_info`` passes no ``--no-check``), every block, and a stream that
stops inside a frame. A big archive is read and hashed by a thread while this one decompresses: hashlib and
libzstd release the GIL on large buffers, so the two use both cores.

``zstandard`` is imported only when this stream is opened: on a PVE node without it, ``vzkeep.pve.decompress``
falls back to the node's ``zstd`` binary.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from vzkeep.pve.decompress import CHUNK, explain_failure

# Files up to this size are read in one go by the caller's thread: a thread per small archive costs more
# than it saves.
PIPELINE_MIN_BYTES = 8 << 20
QUEUE_CHUNKS = 16  # how far the reading thread may run ahead: 16 MiB
# Input handed to libzstd per call, adapted so one call yields about OUTPUT_TARGET bytes: a run of zeros
# compresses a thousandfold, and one call returns all it decodes.
MAX_SLICE = 1 << 20
MIN_SLICE = 4 << 10
OUTPUT_TARGET = 8 << 20


def available() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


class InProcessZstdStream:
    """Same interface as ``vzkeep.pve.decompress.DecompressedStream`` for a ``.zst`` archive."""

    def __init__(self, source: BinaryIO, *, size: int | None = None,
                 on_chunk: Callable[[memoryview], None] | None = None) -> None:
        import zstandard

        self._error_type = zstandard.ZstdError
        self._dctx = zstandard.ZstdDecompressor()
        self._obj: Any = self._dctx.decompressobj()
        self._in_frame = False  # input went into a frame that has not ended yet
        self.source = source
        self.on_chunk = on_chunk or (lambda _chunk: None)
        self.problems: list[str] = []
        self.raw_bytes = 0
        self._pending = memoryview(b"")
        self._out = memoryview(b"")
        self._slice = MAX_SLICE
        self._failed = False
        self._closed = False
        self._eof = False
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue[bytes | BaseException | None] | None = None
        self._stop = threading.Event()
        if size is None or size >= PIPELINE_MIN_BYTES:
            self._queue = queue.Queue(QUEUE_CHUNKS)
            self._thread = threading.Thread(target=self._read_ahead, name="vzkeep-read", daemon=True)
            self._thread.start()

    # -- input ------------------------------------------------------------------------------------------
    def _read_ahead(self) -> None:
        assert self._queue is not None
        try:
            while not self._stop.is_set():
                data = self.source.read(CHUNK)
                if not data:
                    break
                self.raw_bytes += len(data)
                self.on_chunk(memoryview(data))
                self._put(data)
            self._put(None)
        except BaseException as exc:  # handed to the reading side: a thread must not die silently
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> None:
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next_input(self) -> bytes | None:
        if self._queue is None:
            data = self.source.read()  # a small file: one read, hashed here
            self._queue = queue.Queue()
            self._queue.put(None)
            if data:
                self.raw_bytes += len(data)
                self.on_chunk(memoryview(data))
            return data or None
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    # -- decoding ---------------------------------------------------------------------------------------
    def _produce(self) -> bool:
        """Decode more output into ``_out``; False at the end of the input."""
        while True:
            if not self._pending:
                if self._eof:
                    return False
                data = self._next_input()
                if data is None:
                    self._eof = True
                    self._finish_input()
                    return False
                self._pending = memoryview(data)
            if self._failed:
                self._pending = memoryview(b"")  # read (and hashed) to the end, no longer decoded
                continue
            piece, self._pending = self._pending[: self._slice], self._pending[self._slice :]
            out = self._decode(piece)
            if out:
                self._out = memoryview(out)
                return True

    def _decode(self, piece: memoryview) -> bytes:
        try:
            out = self._obj.decompress(piece)
        except self._error_type as exc:
            self._fail(str(exc))
            return b""
        self._in_frame = True
        if self._obj.eof:  # one frame ended; zstd reads the next one from the rest (frames concatenate)
            rest = self._obj.unused_data
            self._obj, self._in_frame = self._dctx.decompressobj(), False
            if rest:
                self._pending = memoryview(bytes(rest) + bytes(self._pending))
        ratio = len(out) / max(1, len(piece))
        self._slice = max(MIN_SLICE, min(MAX_SLICE, int(OUTPUT_TARGET / max(ratio, 1.0))))
        return out

    def _finish_input(self) -> None:
        if self._in_frame and not self._failed:
            self._fail("premature end: the input ends inside a frame")

    def _fail(self, message: str) -> None:
        self._failed = True
        self.problems.append(explain_failure("zstd", 1, message))

    # -- the DecompressedStream interface ------------------------------------------------------------------
    def readinto(self, buf: bytearray | memoryview) -> int:
        if not self._out and not self._produce():
            return 0
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def discard(self, size: int) -> int:
        done = 0
        while done < size:
            if not self._out and not self._produce():
                break
            n = min(size - done, len(self._out))
            self._out = self._out[n:]
            done += n
        return done

    def drain(self) -> int:
        return self.discard(1 << 62)

    def close(self) -> list[str]:
        if self._closed:
            return self.problems
        self._closed = True
        self.drain()
        if self._thread is not None:
            self._thread.join()
        return self.problems

    def __enter__(self) -> InProcessZstdStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None:  # interrupted or timed out: stop reading, do not finish the pass
            self._closed = True
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            return
        self.close()
