"""The compression layer under a vzdump archive, and exact reads over the decompressed bytes.

Decompression runs through the node's own binaries, the way PVE does it (pve-storage ``src/PVE/Storage.pm``
``decompressor_info``: ``zstd -q -d -c``, ``zcat``, ``lzop -d -c``, ``bzcat -q``), so the verifier needs nothing a
PVE node lacks: Python's standard library plus those tools (zstd is decoded in process by the system's libzstd
when it can be loaded: ``vzkeep.pve.zstd_stream``). Each compressed format carries its own checksum (zstd
XXH64, gzip CRC32, lzop adler32, bzip2 CRC), so a clean exit of the tool over the whole stream *is* the
compression-layer integrity check.

Only the standard library may be imported here: this module runs on PVE nodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from vzkeep.errors import UsageError

# pve-storage src/PVE/Storage.pm decompressor_info, vma column (`zcat` is `gzip -d -c`, `bzcat -q` `bzip2 -q -d -c`).
DECOMPRESSORS: dict[str, tuple[str, ...]] = {
    "zst": ("zstd", "-q", "-d", "-c"),
    "gz": ("gzip", "-d", "-c"),
    "lzo": ("lzop", "-d", "-c"),
    "bz2": ("bzip2", "-q", "-d", "-c"),
}
# What vzdump pipes archives through (pve-manager PVE/VZDump.pm compressor_info); zstd keeps its content
# checksum on, the zstd command line's default, as vzdump does not pass --no-check.
COMPRESSORS: dict[str, tuple[str, ...]] = {
    "zst": ("zstd", "-q", "-c"),
    "gz": ("gzip", "-c"),
    "lzo": ("lzop", "-c"),
    "bz2": ("bzip2", "-q", "-c"),
}
# False: always the node's zstd binary, as on a node where libzstd cannot be loaded.
IN_PROCESS_ZSTD = True
PACKAGES = {"zstd": "zstd", "gzip": "gzip", "lzop": "lzop", "bzip2": "bzip2"}

CHUNK = 1 << 20
LEAD = 32 * CHUNK  # how far the hashing and the feeding of one file may drift apart
# A 1 MiB pipe (the default /proc/sys/fs/pipe-max-size) cuts the number of context switches between the
# decompressor and us by 16 compared to the 64 KiB default.
PIPE_SIZE = 1 << 20

# Substrings of the tools' own messages (checked with zstd 1.5.4, gzip 1.12, lzop 1.04, bzip2 1.0.8)
# mapped to what they mean for a backup archive.
_MEANINGS: tuple[tuple[str, str], ...] = (
    ("doesn't match checksum", "content checksum (XXH64) mismatch: the compressed data is corrupt"),
    ("crc error", "CRC32 mismatch: the compressed data is corrupt"),
    ("Checksum error", "adler32 checksum mismatch: the compressed data is corrupt"),
    ("integrity error", "CRC mismatch: the compressed data is corrupt"),
    ("premature end", "the compressed stream ends prematurely: the archive is truncated"),
    ("unexpected end of file", "the compressed stream ends prematurely: the archive is truncated"),
    ("ends unexpectedly", "the compressed stream ends prematurely: the archive is truncated"),
    # lzop 1.04 reports a short read with a stale errno instead of a message of its own.
    ("Inappropriate ioctl", "the compressed stream ends prematurely: the archive is truncated"),
    ("trailing garbage", "unexpected data after the end of the compressed stream"),
    ("unsupported format", "not valid zstd data (bad frame header) where a zstd frame should start"),
    # libzstd's own words (ZSTD_getErrorString), as the in-process decoder reports them
    ("Unknown frame descriptor", "not valid zstd data (bad frame header) where a zstd frame should start"),
    ("Data corruption detected", "the compressed data is corrupt"),
    ("not in gzip format", "not gzip data: the file does not start with a gzip header"),
    ("not a lzop file", "not lzop data: the file does not start with an lzop header"),
    ("not a bzip2 file", "not bzip2 data: the file does not start with a bzip2 header"),
    ("Corrupted block", "a compressed block is corrupt"),
    ("format violated", "the compressed data is corrupt (format violated)"),
    ("Decoding error", "the compressed data is corrupt"),
)


class DecompressError(UsageError):
    """The compression layer cannot be checked at all (a tool is missing or an unknown compression)."""


def decompressor_command(compression: str) -> tuple[str, ...]:
    try:
        return DECOMPRESSORS[compression]
    except KeyError:
        allowed = ", ".join(sorted(DECOMPRESSORS))
        raise DecompressError(f"unknown compression {compression!r}; allowed: {allowed} or none") from None


def explain_failure(tool: str, returncode: int, stderr: str) -> str:
    """One sentence naming what is wrong, followed by the tool's own words."""
    raw = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    meaning = next((text for needle, text in _MEANINGS if needle in raw), None)
    if meaning is None:
        meaning = f"{tool} failed with exit status {returncode}"
    return f"{tool}: {meaning} ({raw})" if raw else f"{tool}: {meaning}"


class DecompressedStream:
    """A readable, unbuffered view of an archive's decompressed bytes.

    ``on_chunk`` sees every raw (compressed) chunk read from ``source`` exactly once, in order, so a
    caller can hash the file in the same pass. For a compressed archive, threads feed ``source`` to the
    tool while the caller parses the tool's output; hashlib, splice and pipe I/O release the GIL, so
    reading, hashing, decompressing and parsing overlap. For a regular file one thread splices it into the
    tool (no copy through user space) while another hashes the same bytes, the two kept within ``LEAD``
    bytes of each other so the file is read from disk once. After ``close()``, ``problems`` lists what the
    compression layer found wrong (empty when the tool ran to a clean end over the whole input).
    """

    def __init__(
        self,
        source: BinaryIO,
        compression: str | None,
        *,
        on_chunk: Callable[[memoryview], None] | None = None,
    ) -> None:
        self.source = source
        self.compression = compression or None
        self.on_chunk = on_chunk or (lambda _chunk: None)
        self.problems: list[str] = []
        self.raw_bytes = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._stderr = bytearray()
        self._feed_error: BaseException | None = None
        self._aborted = False
        self._closed = False
        self._devnull: int | None = None
        self._scratch: memoryview | None = None
        self._lockstep = _Lockstep((), LEAD)
        if self.compression is not None:
            self._start_tool(decompressor_command(self.compression))
            if hasattr(os, "splice"):
                self._devnull = os.open(os.devnull, os.O_WRONLY)

    # -- setup ---------------------------------------------------------------------------------------
    def _start_tool(self, argv: tuple[str, ...]) -> None:
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
            )
        except FileNotFoundError:
            package = PACKAGES.get(argv[0], argv[0])
            raise DecompressError(
                f"{argv[0]} is not installed, so .{self.compression} archives cannot be checked; "
                f"install the {package!r} package (every PVE node has it)"
            ) from None
        assert self._proc.stdout is not None
        _enlarge_pipe(self._proc.stdout.fileno())
        _enlarge_pipe(self._proc.stdin.fileno())  # type: ignore[union-attr]
        feeders = self._file_feeders() or [threading.Thread(target=self._feed, name="vzkeep-feed")]
        self._threads = [*feeders, threading.Thread(target=self._collect_stderr, name="vzkeep-stderr")]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _file_feeders(self) -> list[threading.Thread] | None:
        """Splice + hash threads when ``source`` is a regular file on a kernel with splice."""
        try:
            fd = self.source.fileno()
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
            start = os.lseek(fd, 0, os.SEEK_CUR)
        except (AttributeError, OSError, ValueError):
            return None
        if not regular or not hasattr(os, "splice"):
            return None
        self._lockstep = _Lockstep(("feed", "hash"), LEAD)
        return [
            threading.Thread(target=self._splice_feed, args=(fd, start), name="vzkeep-splice"),
            threading.Thread(target=self._hash_file, args=(fd, start), name="vzkeep-hash"),
        ]

    def _splice_feed(self, fd: int, offset: int) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        out = self._proc.stdin.fileno()
        try:
            while not self._aborted and self._lockstep.wait_turn("feed", offset):
                try:
                    moved = os.splice(fd, out, CHUNK, offset_src=offset)
                except BrokenPipeError:
                    break  # the tool stopped reading (it found an error); its exit status says why
                except OSError:  # a file system without splice support: copy instead
                    moved = _write_all(out, memoryview(os.pread(fd, CHUNK, offset)))
                if not moved:
                    break
                offset += moved
                self._lockstep.advance("feed", offset)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # reported by close(); a thread must not die silently
            self._feed_error = exc
        finally:
            self._lockstep.finish("feed")
            self._proc.stdin.close()

    def _hash_file(self, fd: int, offset: int) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            # to the end even when the tool gave up, so the hash covers the whole file
            while not self._aborted and self._lockstep.wait_turn("hash", offset):
                n = os.preadv(fd, [buf], offset)
                if not n:
                    break
                self.raw_bytes += n
                self.on_chunk(view[:n])
                offset += n
                self._lockstep.advance("hash", offset)
        except BaseException as exc:
            self._feed_error = exc
        finally:
            self._lockstep.finish("hash")

    def _feed(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while n := self.source.readinto(buf):  # type: ignore[attr-defined]
                chunk = view[:n]
                self.raw_bytes += n
                self.on_chunk(chunk)
                _write_all(fd, chunk)
        except BrokenPipeError:
            # The tool stopped reading (it found an error); its exit status and stderr say why.
            self._drain_source(buf)
        except BaseException as exc:  # reported by close(); a thread must not die silently
            self._feed_error = exc
        finally:
            self._proc.stdin.close()

    def _drain_source(self, buf: bytearray) -> None:
        # Keep hashing to the end so the recorded SHA-256 covers the whole file even when the tool gave up.
        view = memoryview(buf)
        while not self._aborted and (n := self.source.readinto(buf)):  # type: ignore[attr-defined]
            self.raw_bytes += n
            self.on_chunk(view[:n])

    def _collect_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while data := self._proc.stderr.read(65536):
            self._stderr += data

    # -- reading -------------------------------------------------------------------------------------
    def readinto(self, buf: bytearray | memoryview) -> int:
        """Read up to len(buf) bytes; 0 means end of the decompressed data."""
        if self._proc is None:
            n = self.source.readinto(buf)  # type: ignore[attr-defined]
            if n:
                self.raw_bytes += n
                self.on_chunk(memoryview(buf)[:n])
            return n or 0
        assert self._proc.stdout is not None
        return self._proc.stdout.readinto(buf) or 0

    def discard(self, size: int) -> int:
        """Drop up to ``size`` bytes of the tool's output without copying them through user space
        (splice into /dev/null); return how many were dropped (fewer only at the end of the stream).

        Verifying a VMA needs its extent headers but not the disk data between them, and copying that
        data out of the pipe would cost about as much as the decompression itself.
        """
        if self._proc is None or self._devnull is None:
            return self._discard_by_reading(size)
        fd = self._proc.stdout.fileno()  # type: ignore[union-attr]
        done = 0
        while done < size:
            try:
                moved = os.splice(fd, self._devnull, size - done)
            except OSError:  # a kernel without splice into /dev/null
                self._devnull = None
                return done + self._discard_by_reading(size - done)
            if not moved:
                break
            done += moved
        return done

    def _discard_by_reading(self, size: int) -> int:
        if self._scratch is None:
            self._scratch = memoryview(bytearray(CHUNK))
        buf = self._scratch
        done = 0
        while done < size and (n := self.readinto(buf[: min(len(buf), size - done)])):
            done += n
        return done

    def drain(self) -> int:
        """Read and discard the rest, so the tool sees its whole input and the hash covers the file."""
        total = 0
        while n := self.discard(1 << 40):
            total += n
        return total

    def close(self) -> list[str]:
        """Finish the pass; return (and keep in ``problems``) what the compression layer reported."""
        if self._closed:
            return self.problems
        self._closed = True
        if not self._aborted:
            self.drain()
        if self._proc is None:
            return self.problems
        for thread in self._threads:
            thread.join()
        returncode = self._proc.wait()
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None
        self._proc.stdout.close()  # type: ignore[union-attr]
        self._proc.stderr.close()  # type: ignore[union-attr]
        if self._feed_error is not None:
            raise self._feed_error
        if returncode != 0:
            tool = self._proc.args[0]  # type: ignore[index]
            self.problems.append(explain_failure(tool, returncode, self._stderr.decode(errors="replace")))
        return self.problems

    def __enter__(self) -> DecompressedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None:
            self._aborted = True
            self._lockstep.abort()
            if self._proc is not None:
                self._proc.kill()
        self.close()


def open_stream(source: BinaryIO, compression: str | None, *, size: int | None = None,
                on_chunk: Callable[[memoryview], None] | None = None) -> Any:
    """The decompressed view of ``source``: zstd decoded in this process when libzstd's Python binding is
    installed (no process per archive), otherwise the node's tool (``DecompressedStream``)."""
    if compression == "zst" and IN_PROCESS_ZSTD:
        from vzkeep.pve import zstd_stream

        if zstd_stream.available():
            return zstd_stream.InProcessZstdStream(source, size=size, on_chunk=on_chunk)
    return DecompressedStream(source, compression, on_chunk=on_chunk)


def _write_all(fd: int, data: memoryview) -> int:
    size = len(data)
    while data:
        written = os.write(fd, data)
        data = data[written:]
    return size


class _Lockstep:
    """Keeps readers of one file within ``lead`` bytes of each other, so what one brings into the page
    cache is still there for the other: the file is read from disk once, even when it exceeds memory."""

    def __init__(self, names: tuple[str, ...], lead: int) -> None:
        self.lead = lead
        self.positions = dict.fromkeys(names, 0)
        self.done: set[str] = set()
        self.aborted = False
        self.cond = threading.Condition()

    def _others_behind(self, name: str, offset: int) -> bool:
        others = [pos for other, pos in self.positions.items() if other != name and other not in self.done]
        return any(offset - pos >= self.lead for pos in others)

    def wait_turn(self, name: str, offset: int) -> bool:
        """Wait until ``name`` may read at ``offset``; False once aborted."""
        with self.cond:
            self.cond.wait_for(lambda: self.aborted or not self._others_behind(name, offset))
            return not self.aborted

    def advance(self, name: str, offset: int) -> None:
        with self.cond:
            self.positions[name] = offset
            self.cond.notify_all()

    def finish(self, name: str) -> None:
        with self.cond:
            self.done.add(name)
            self.cond.notify_all()

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.cond.notify_all()


def _enlarge_pipe(fd: int) -> None:
    # An unprivileged user over pipe-user-pages-soft, or not Linux: the default size still works.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


class ExactReader:
    """Exact reads and skips over a stream, tracking the byte offset for error messages.

    The archive parsers pull headers with ``read()`` and step over data with ``skip()``. Over a stream that
    can ``discard`` (a decompressor's pipe) only the bytes asked for are read, and skipped data never
    enters user space; otherwise reads go through one large reusable buffer.
    """

    def __init__(self, stream: DecompressedStream | BinaryIO, buffer_size: int = 4 * CHUNK) -> None:
        self._stream = stream
        self._discard: Callable[[int], int] | None = getattr(stream, "discard", None)
        self._buf = bytearray(buffer_size)
        self._view = memoryview(self._buf)
        self._start = 0  # unread data is _buf[_start:_end]
        self._end = 0
        self.offset = 0  # bytes handed out (read or skipped) so far
        self.eof = False

    def _fill(self, need: int) -> bool:
        """Append more bytes after the unread ones (read-ahead unless the stream can discard);
        False at the end of the stream."""
        if self.eof:
            return False
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf):
            pending = self._end - self._start
            self._buf[:pending] = self._view[self._start : self._end]
            self._start, self._end = 0, pending
        limit = len(self._buf) if self._discard is None else min(len(self._buf), self._end + need)
        n = self._stream.readinto(self._view[self._end : limit])  # type: ignore[attr-defined]
        if not n:
            self.eof = True
            return False
        self._end += n
        return True

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the stream."""
        parts: list[bytes] = []
        wanted = size
        while wanted:
            if self._start == self._end and not self._fill(wanted):
                break
            take = min(wanted, self._end - self._start)
            parts.append(bytes(self._view[self._start : self._start + take]))
            self._start += take
            wanted -= take
        self.offset += size - wanted
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def chunks(self, size: int) -> Iterator[memoryview]:
        """Up to ``size`` bytes as views valid until the next call; stops early at the end of the stream."""
        while size:
            if self._start == self._end and not self._fill(size):
                return
            take = min(size, self._end - self._start)
            view = self._view[self._start : self._start + take]
            self._start += take
            self.offset += take
            size -= take
            yield view

    def skip(self, size: int) -> int:
        """Step over ``size`` bytes; return how many were there."""
        buffered = min(size, self._end - self._start)
        self._start += buffered
        self.offset += buffered
        if buffered == size or self.eof:
            return buffered
        if self._discard is None:
            return buffered + sum(len(view) for view in self.chunks(size - buffered))
        moved = self._discard(size - buffered)
        self.offset += moved
        if moved < size - buffered:
            self.eof = True
        return buffered + moved


@contextmanager
def compressed_writer(path: str | os.PathLike[str], compression: str | None) -> Iterator[BinaryIO]:
    """Write a file through the node's compressor, as vzdump does (``compression=None`` writes it plain).

    Raises ``DecompressError`` if the tool is missing or fails; the partial file is left for the caller.
    """
    with open(path, "wb") as out:
        if compression is None:
            yield out
            return
        argv = COMPRESSORS.get(compression)
        if argv is None:
            raise DecompressError(f"unknown compression {compression!r}; allowed: {', '.join(COMPRESSORS)}")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise DecompressError(f"{argv[0]} is not installed; install the {argv[0]!r} package") from None
        assert proc.stdin is not None and proc.stderr is not None
        try:
            yield proc.stdin  # type: ignore[misc]
        finally:
            proc.stdin.close()
            stderr = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
            if proc.wait() != 0:
                raise DecompressError(explain_failure(argv[0], proc.returncode, stderr))
