"""A zstd archive's decompressed bytes, decoded in this process by the system's libzstd (through ctypes).

The node's ``zstd -q -d -c`` (pve-storage ``PVE/Storage.pm`` ``decompressor_info``) costs a process, two
pipes and three threads per archive: over a thousand small archives that is most of the time. libzstd in
process checks exactly what the tool checks, with the same library: each frame's content checksum (XXH64,
which vzdump leaves on: pve-manager ``PVE/VZDump.pm`` ``compressor_info`` passes no ``--no-check``), every
block, and an input that stops inside a frame. Output goes to one reused buffer, so data the VMA check skips
is never copied. A big archive is read and hashed by a thread while this one decompresses: hashlib and
ctypes calls release the GIL, so the two use both cores.

Standard library only (ctypes): libzstd1 is on every Debian and PVE node (apt and systemd need it). Where it
cannot be loaded, ``vzkeep.pve.decompress`` runs the node's ``zstd`` binary instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from vzkeep.pve.decompress import CHUNK, explain_failure

# Files up to this size are read in one go by the caller's thread: a thread per small archive costs more
# than it saves.
PIPELINE_MIN_BYTES = 8 << 20
QUEUE_CHUNKS = 16  # how far the reading thread may run ahead: 16 MiB
OUT_SIZE = 1 << 20  # ZSTD_DStreamOutSize() is one block (128 KiB); larger means fewer calls


class _Buffer(ctypes.Structure):
    """ZSTD_inBuffer and ZSTD_outBuffer (zstd.h): the same three fields."""

    _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


@functools.cache
def _libzstd() -> Any:
    """The system's libzstd, its prototypes declared; None when there is none."""
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.ZSTD_createDCtx.restype = ctypes.c_void_p
    lib.ZSTD_createDCtx.argtypes = []
    lib.ZSTD_freeDCtx.restype = ctypes.c_size_t
    lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
    lib.ZSTD_decompressStream.restype = ctypes.c_size_t
    lib.ZSTD_decompressStream.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Buffer), ctypes.POINTER(_Buffer)]
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    lib.ZSTD_getErrorName.restype = ctypes.c_char_p
    lib.ZSTD_getErrorName.argtypes = [ctypes.c_size_t]
    return lib


def available() -> bool:
    return _libzstd() is not None


class InProcessZstdStream:
    """Same interface as ``vzkeep.pve.decompress.DecompressedStream`` for a ``.zst`` archive."""

    def __init__(self, source: BinaryIO, *, size: int | None = None,
                 on_chunk: Callable[[memoryview], None] | None = None) -> None:
        self._lib = _libzstd()
        self._dctx = self._lib.ZSTD_createDCtx()
        if not self._dctx:
            raise MemoryError("libzstd could not allocate a decompression context")
        self.source = source
        self.on_chunk = on_chunk or (lambda _chunk: None)
        self.problems: list[str] = []
        self.raw_bytes = 0
        self._out_raw = ctypes.create_string_buffer(OUT_SIZE)
        self._out_view = memoryview(self._out_raw).cast("B")
        self._out = _Buffer(ctypes.addressof(self._out_raw), OUT_SIZE, 0)
        self._taken = 0  # bytes of the output buffer already handed out or skipped
        self._data: bytes = b""  # the input chunk being decoded (kept alive while libzstd points into it)
        self._in = _Buffer(None, 0, 0)
        self._frame_open = False  # libzstd's last answer: a frame is not finished yet
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
        if self._queue is None:  # a small file: one read, hashed here
            data = self.source.read()
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
        """Decode into the output buffer until it holds unread bytes; False at the end of the input."""
        self._out.pos = self._taken = 0
        while True:
            if self._in.pos >= self._in.size and not self._eof:
                data = self._next_input()
                if data is None:
                    self._eof = True
                    self._data, self._in = b"", _Buffer(None, 0, 0)
                else:
                    self._data = data  # kept alive while libzstd points into it
                    self._in = _Buffer(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p), len(data), 0)
            if self._failed:
                self._in.pos = self._in.size  # read (and hashed) to the end, no longer decoded
                if self._eof:
                    return False
                continue
            if self._eof and not self._frame_open:
                return False
            if self._decode_step():
                return True
            if self._eof:  # nothing more came out with no more input: the last frame is cut short
                if self._frame_open and not self._failed:
                    self._fail("premature end: the input ends inside a frame")
                return False

    def _decode_step(self) -> bool:
        """One ZSTD_decompressStream call; True when it put bytes in the output buffer."""
        answer = self._lib.ZSTD_decompressStream(self._dctx, ctypes.byref(self._out), ctypes.byref(self._in))
        if self._lib.ZSTD_isError(answer):
            self._fail(self._lib.ZSTD_getErrorName(answer).decode(errors="replace"))
            return False
        # 0: a frame ended and is flushed; the next input starts another (frames concatenate, as with zstd -d)
        self._frame_open = answer != 0
        return self._out.pos > 0

    def _fail(self, message: str) -> None:
        self._failed = True
        self.problems.append(explain_failure("zstd", 1, message))

    # -- the DecompressedStream interface ------------------------------------------------------------------
    def readinto(self, buf: bytearray | memoryview) -> int:
        if self._taken >= self._out.pos and not self._produce():
            return 0
        n = min(len(buf), self._out.pos - self._taken)
        buf[:n] = self._out_view[self._taken : self._taken + n]
        self._taken += n
        return n

    def discard(self, size: int) -> int:
        done = 0
        while done < size:
            if self._taken >= self._out.pos and not self._produce():
                break
            n = min(size - done, self._out.pos - self._taken)
            self._taken += n
            done += n
        return done

    def drain(self) -> int:
        return self.discard(1 << 62)

    def close(self) -> list[str]:
        if self._closed:
            return self.problems
        self._closed = True
        try:
            self.drain()
        finally:
            self._release()
        return self.problems

    def _release(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._dctx:
            self._lib.ZSTD_freeDCtx(self._dctx)
            self._dctx = None

    def __enter__(self) -> InProcessZstdStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None:  # interrupted or timed out: stop reading, do not finish the pass
            self._closed = True
            self._stop.set()
            self._release()
            return
        self.close()
