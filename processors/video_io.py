"""Video decoding: decord by default (as the official UMT code), PyAV when decord is missing or fails.

A source can be a file path, an http(s) URL, raw bytes, a binary file object, or frames that are already
decoded (a numpy array or torch tensor, THWC or TCHW, uint8). Every reader returns frames as a torch
uint8 tensor of shape (T, C, H, W) -- the layout `processors.transforms` works on -- and decodes only the
frame indices it is asked for. Every way an input can be unusable (missing, empty, truncated, not a video,
unreachable URL) surfaces as one exception type, `VideoDecodeError`, naming the source and the cause.
"""

from __future__ import annotations

import io
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Union

import numpy as np
import torch

try:  # decord is optional: it has no wheels for some platforms (e.g. aarch64, macOS arm64)
    import decord
except ImportError:  # pragma: no cover - depends on the installation
    decord = None

try:
    import av
except ImportError:  # pragma: no cover - depends on the installation
    av = None

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "DEFAULT_URL_DEADLINE",
    "DEFAULT_URL_MAX_BYTES",
    "DEFAULT_URL_RETRIES",
    "DEFAULT_URL_TIMEOUT",
    "VideoDecodeError",
    "VideoInfo",
    "VideoReader",
    "VideoSource",
    "available_backends",
    "describe_source",
    "fetch_url",
    "frames_to_tchw",
    "get_video_info",
    "read_video",
]

VideoSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray, torch.Tensor]

BACKENDS = ("auto", "decord", "pyav", "image")  # "image": a still image read as a 1-frame video

DEFAULT_URL_TIMEOUT = 30.0  # seconds one socket read may wait
DEFAULT_URL_RETRIES = 3
DEFAULT_URL_DEADLINE = 300.0  # seconds a whole download may take, retries and back-off included
DEFAULT_URL_MAX_BYTES = 2 * 1024**3  # the largest body a download may bring
_URL_CHUNK = 1 << 20
_IMAGE_DEMUXERS = ("image2", "image2pipe")  # and every "<codec>_pipe" demuxer (png_pipe, jpeg_pipe, webp_pipe, ...)


class VideoDecodeError(ValueError):
    """A video could not be read: missing, empty, truncated, not a video, or an unreachable URL.

    Attributes:
        source: a short human-readable description of the input (path, URL, or "<N bytes>").
        cause: why it failed, as text.
    """

    def __init__(self, source: str, cause: str | None = None):
        # DataLoader workers re-raise exceptions by calling `type(exc)(message)`, so a one-argument
        # call must also give a readable error.
        self.source = source
        self.cause = cause
        super().__init__(source if cause is None else f"cannot decode video {source}: {cause}")


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video without decoding all of it.

    Attributes:
        num_frames: number of frames the container reports (decord: its frame index; PyAV: the stream
            header, or a packet count when the header has none).
        fps: average frame rate, or None when the container does not say (in-memory frames).
        height, width: frame size in pixels.
        backend: "decord", "pyav" or "array": the library decoding at the time (it changes when "auto" falls back
            to PyAV after decord failed on the frames).
    """

    num_frames: int
    fps: float | None
    height: int
    width: int
    backend: str

    @property
    def duration(self) -> float | None:
        """Length in seconds (num_frames / fps), or None when the frame rate is unknown."""
        return self.num_frames / self.fps if self.fps else None


def available_backends() -> list[str]:
    """Names of the decoding libraries importable here, in the order "auto" tries them."""
    return [name for name, module in (("decord", decord), ("pyav", av)) if module is not None]


def describe_source(source: Any) -> str:
    """A short description of `source` for error messages and logs (never the raw bytes)."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"<{type(source).__name__} of shape {tuple(source.shape)}>"
    name = getattr(source, "name", None)
    return repr(name) if isinstance(name, str) else f"<{type(source).__name__}>"


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def fetch_url(
    url: str,
    timeout: float = DEFAULT_URL_TIMEOUT,
    retries: int = DEFAULT_URL_RETRIES,
    deadline: float = DEFAULT_URL_DEADLINE,
    max_bytes: int = DEFAULT_URL_MAX_BYTES,
) -> bytes:
    """Download `url` and return its body.

    Transient failures (connection errors, timeouts, HTTP 5xx and 429) are retried `retries` times with
    exponential back-off (0.5 s, 1 s, 2 s, ...); other HTTP errors (404, 403, ...) fail at once, since
    asking again cannot help. `timeout` bounds each socket read; `deadline` bounds the whole download, retries
    included, so a server that trickles bytes fails too (within `deadline` plus at most one read's `timeout`);
    a body over `max_bytes` (announced or received) fails at once. Any failure raises `VideoDecodeError` naming
    the URL and the last cause.
    """
    # urllib, not huggingface_hub's http_backoff: the Hub session refuses every host under HF_HUB_OFFLINE=1.
    for name, value in (("timeout", timeout), ("deadline", deadline), ("max_bytes", max_bytes)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value == float("inf"):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    end = time.monotonic() + deadline
    cause = "no attempt made"
    for attempt in range(retries + 1):
        try:
            return _fetch_once(url, timeout, end, int(max_bytes), deadline)
        except _FetchRefused as error:
            cause = str(error)
            break
        except urllib.error.HTTPError as error:
            cause = f"HTTP {error.code} {error.reason}"
            if error.code < 500 and error.code != 429:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            cause = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        delay = 0.5 * 2**attempt
        if attempt < retries and time.monotonic() + delay < end:
            logger.warning("fetching %s failed (%s); retry %d/%d in %.1f s", url, cause, attempt + 1, retries, delay)
            time.sleep(delay)
        elif attempt < retries:
            cause += f"; no time left for a retry within the {deadline:g} s deadline"
            break
    raise VideoDecodeError(repr(url), f"download failed: {cause}")


class _FetchRefused(Exception):
    """A download that must not be retried: over the size cap or past the deadline."""


def _fetch_once(url: str, timeout: float, end: float, max_bytes: int, deadline: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "umt-processors"})
    with urllib.request.urlopen(request, timeout=max(min(timeout, end - time.monotonic()), 1e-3)) as response:
        announced = response.headers.get("Content-Length")
        if announced is not None and announced.isdigit() and int(announced) > max_bytes:
            raise _FetchRefused(f"the server announces {int(announced)} bytes, over max_bytes={max_bytes}")
        body = bytearray()
        while True:
            chunk = response.read1(_URL_CHUNK)  # returns what has arrived: a trickle cannot hold the loop
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > max_bytes:
                raise _FetchRefused(f"the body passed max_bytes={max_bytes}")
            if time.monotonic() > end:
                raise _FetchRefused(f"the download did not finish within the {deadline:g} s deadline ({len(body)} bytes so far)")


# --------------------------------------------------------------------------------------------------
# Backends. Each one is opened once, knows its VideoInfo, and decodes a list of frame indices to a
# (T, C, H, W) uint8 tensor. They raise plain exceptions; VideoReader turns them into VideoDecodeError.
# --------------------------------------------------------------------------------------------------


class _DecordBackend:
    name = "decord"

    def __init__(self, data: str | bytes):
        if decord is None:
            raise ImportError("decord is not installed")
        # num_threads=1 as the official loaders: parallelism comes from DataLoader workers, and decord's
        # own threads oversubscribe the cores when several workers decode at once.
        self._reader = decord.VideoReader(data if isinstance(data, str) else io.BytesIO(data), num_threads=1)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps()) or None
        self._size: tuple[int, int] | None = None

    def size(self) -> tuple[int, int]:
        if self._size is None:  # decord exposes no frame size without decoding a frame
            self._size = tuple(self._reader[0].shape[:2])
            self._reader.seek(0)
        return self._size

    def get_frames(self, indices: list[int]) -> torch.Tensor:
        frames = self._reader.get_batch(indices).asnumpy()  # (T, H, W, C)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        self._reader = None


class _PyAVBackend:
    name = "pyav"

    def __init__(self, data: str | bytes):
        if av is None:
            raise ImportError("av (PyAV) is not installed")
        self._data = data
        self._container = av.open(data if isinstance(data, str) else io.BytesIO(data))
        if not self._container.streams.video:
            self._container.close()
            raise ValueError("the file has no video stream")
        demuxer = self._container.format.name
        if demuxer.endswith("_pipe") or demuxer in _IMAGE_DEMUXERS:  # FFmpeg reads a still image as a 1-frame stream
            self._container.close()
            raise ValueError(f"it is a still image ({demuxer.removesuffix('_pipe')}), not a video; read images with "
                             "backend='image' (ImageClipDecoder)")
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._height, self._width = stream.codec_context.height, stream.codec_context.width
        self.num_frames = stream.frames or self._count_packets()

    def _count_packets(self) -> int:
        # Some containers (e.g. webm, raw streams) carry no frame count; counting packets demuxes
        # without decoding, so it costs a read of the file but no decode work.
        count = sum(1 for packet in self._container.demux(video=0) if packet.size > 0)
        self._container.seek(0)
        return count

    def size(self) -> tuple[int, int]:
        return self._height, self._width

    def get_frames(self, indices: list[int]) -> torch.Tensor:
        wanted = set(indices)
        last = max(indices)
        decoded: dict[int, np.ndarray] = {}
        self._container.seek(0)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        # Frame-accurate seeking is unreliable across codecs, so decode forward from the start and
        # convert to RGB only the frames asked for (the conversion is most of the per-frame cost).
        position = -1
        for position, frame in enumerate(self._container.decode(stream)):
            if position in wanted:
                decoded[position] = frame.to_ndarray(format="rgb24")
            if position >= last:
                break
        if position < last:
            raise ValueError(f"the stream ended after {position + 1} frames but frame {last} was requested")
        frames = np.stack([decoded[i] for i in indices])  # (T, H, W, C)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        self._container.close()


class _ArrayBackend:
    name = "array"

    def __init__(self, frames: torch.Tensor):
        self._frames = frames  # (T, C, H, W) uint8
        self.num_frames = frames.shape[0]
        self.fps = None

    def size(self) -> tuple[int, int]:
        return tuple(self._frames.shape[-2:])

    def get_frames(self, indices: list[int]) -> torch.Tensor:
        return self._frames[torch.as_tensor(indices, dtype=torch.long)]

    def close(self) -> None:
        self._frames = None


class _ImageBackend(_ArrayBackend):
    """A still image (any format PIL reads) as a 1-frame video, so images and videos share one decoding path."""

    name = "image"

    def __init__(self, data: str | bytes):
        from PIL import Image  # PIL is only needed for image sources

        with Image.open(data if isinstance(data, str) else io.BytesIO(data)) as image:
            super().__init__(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)[None])


def frames_to_tchw(frames: np.ndarray | torch.Tensor, layout: str | None = None) -> torch.Tensor:
    """Turn already-decoded frames into a (T, C, H, W) uint8 tensor with 3 channels.

    Args:
        frames: uint8, (T, H, W, C) or (T, C, H, W), C in {1, 3, 4}. Grey frames are repeated to RGB and
            an alpha channel is dropped.
        layout: "THWC" or "TCHW"; None infers it from where a dimension of size 1, 3 or 4 sits. When both
            readings are possible, numpy arrays are taken as THWC (what decoders return) and tensors as TCHW
            (what torch code produces).
    Returns:
        torch.uint8 tensor (T, 3, H, W) sharing memory with the input when no conversion is needed.
    """
    if not isinstance(frames, (np.ndarray, torch.Tensor)):
        raise ValueError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")
    if frames.ndim != 4:
        raise ValueError(f"frames must have 4 dimensions (T, H, W, C) or (T, C, H, W), got shape {tuple(frames.shape)}")
    if frames.dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"frames must be uint8 in [0, 255], got dtype {frames.dtype}")
    if frames.shape[0] == 0:
        raise VideoDecodeError(describe_source(frames), "it holds zero frames")
    tensor = torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames
    if layout is None:
        last_is_channel, second_is_channel = tensor.shape[-1] in (1, 3, 4), tensor.shape[1] in (1, 3, 4)
        if last_is_channel and second_is_channel:
            layout = "THWC" if isinstance(frames, np.ndarray) else "TCHW"
        elif last_is_channel:
            layout = "THWC"
        elif second_is_channel:
            layout = "TCHW"
        else:
            raise ValueError(
                f"cannot find the channel dimension (size 1, 3 or 4) in frames of shape {tuple(tensor.shape)}"
            )
    if layout == "THWC":
        tensor = tensor.permute(0, 3, 1, 2)
    elif layout != "TCHW":
        raise ValueError(f"layout must be 'THWC', 'TCHW' or None, got {layout!r}")
    channels = tensor.shape[1]
    if channels == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    elif channels == 4:
        tensor = tensor[:, :3]
    elif channels != 3:
        raise ValueError(
            f"frames must have 1, 3 or 4 channels, got {channels} (shape {tuple(tensor.shape)}, layout {layout})"
        )
    return tensor.contiguous()


def _load_source(
    source: VideoSource, timeout: float, retries: int, deadline: float = DEFAULT_URL_DEADLINE,
    max_bytes: int = DEFAULT_URL_MAX_BYTES,
) -> str | bytes:
    """Path, URL, bytes or file object -> a local path or the file's bytes; checks the cheap failure cases."""
    name = describe_source(source)
    if isinstance(source, (str, os.PathLike)) and not _is_url(source):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise VideoDecodeError(name, "no such file")
        if os.path.isdir(path):
            raise VideoDecodeError(name, "it is a directory, not a video file")
        if os.path.getsize(path) == 0:
            raise VideoDecodeError(name, "the file is empty (0 bytes)")
        return path
    if _is_url(source):
        data = fetch_url(source, timeout=timeout, retries=retries, deadline=deadline, max_bytes=max_bytes)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        # decord needs a seekable file; reading the object into memory works for sockets and pipes too.
        data = source.read()
        if not isinstance(data, bytes):
            raise ValueError(
                f"source file object must be opened in binary mode, its read() returned {type(data).__name__}"
            )
    else:
        raise ValueError(
            f"source must be a path, http(s) URL, bytes, a binary file object, or a numpy/torch frame array; "
            f"got {type(source).__name__}"
        )
    if len(data) == 0:
        raise VideoDecodeError(name, "the data is empty (0 bytes)")
    return data


class VideoReader:
    """Open a video once, read its length, then decode the frames you choose.

    Example:
        >>> with VideoReader("clip.mp4") as reader:
        ...     indices = sparse_test_indices(8, reader.num_frames)
        ...     frames = reader.get_frames(indices)     # (8, 3, H, W) uint8

    Args:
        source: path, http(s) URL, bytes / bytearray / memoryview, binary file object, or decoded frames
            (numpy / torch uint8, THWC or TCHW; see `frames_to_tchw`).
        backend: "auto" (decord, then PyAV if decord is missing or fails), "decord", "pyav", or "image" (a still
            image, read with PIL as a 1-frame video). Ignored for decoded frames.
        timeout, retries, deadline, max_bytes: for URLs, see `fetch_url` (a download gives up after `deadline`
            seconds in all, or once its body passes `max_bytes`).
    Attributes:
        num_frames, fps: known as soon as the video is open.
        info: a `VideoInfo`; reading its frame size before any `get_frames` costs decord one decoded frame.
    Raises:
        VideoDecodeError: the source is missing, empty, truncated, not a video, or cannot be downloaded.
        ValueError: an argument has the wrong type or value.
    """

    def __init__(
        self,
        source: VideoSource,
        backend: str = "auto",
        timeout: float = DEFAULT_URL_TIMEOUT,
        retries: int = DEFAULT_URL_RETRIES,
        deadline: float = DEFAULT_URL_DEADLINE,
        max_bytes: int = DEFAULT_URL_MAX_BYTES,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.source_name = describe_source(source)
        self._failures: list[str] = []
        self._remaining: list[str] = []  # backends "auto" has not tried yet
        self._frame_size: tuple[int, int] | None = None
        if isinstance(source, (np.ndarray, torch.Tensor)):
            self._data = None
            self._backend = _ArrayBackend(frames_to_tchw(source))
        else:
            self._data = _load_source(source, timeout, retries, deadline, max_bytes)
            self._backend = self._open_next(["decord", "pyav"] if backend == "auto" else [backend])
        self.num_frames, self.fps = self._backend.num_frames, self._backend.fps
        if self.num_frames <= 0:
            name = self._backend.name
            self.close()
            raise VideoDecodeError(self.source_name, f"{name} found no frames in it")

    def _open_next(self, names: list[str]):
        for name in names:
            backend_class = {"decord": _DecordBackend, "pyav": _PyAVBackend, "image": _ImageBackend}[name]
            try:
                backend = backend_class(self._data)
            except Exception as error:  # each library raises its own types; keep the text for the report
                self._failures.append(f"{name}: {type(error).__name__}: {error}")
                continue
            self._remaining = names[names.index(name) + 1 :]
            return backend
        raise VideoDecodeError(self.source_name, "; ".join(self._failures))

    @property
    def backend(self) -> str:
        """The library decoding now: "decord", "pyav" or "array" (changes when "auto" falls back to PyAV)."""
        return self._backend.name

    @property
    def info(self) -> VideoInfo:
        """Frame count, fps, frame size and backend. The size comes from decoded frames when there are any;
        before that, decord has to decode one frame to learn it (PyAV reads it from the stream header)."""
        if self._frame_size is None:
            try:
                self._frame_size = tuple(self._backend.size())
            except Exception as error:
                raise VideoDecodeError(self.source_name, f"{self.backend}: {type(error).__name__}: {error}") from error
        return VideoInfo(self.num_frames, self.fps, *self._frame_size, self.backend)

    def get_frames(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Decode the frames at `indices` (0-based, repeats and any order allowed).

        Returns:
            torch.uint8 tensor (len(indices), 3, H, W).
        Raises:
            ValueError: an index is outside [0, num_frames).
            VideoDecodeError: the frames cannot be decoded (e.g. the file is truncated).
        """
        index_list = [int(i) for i in np.asarray(indices).reshape(-1)]
        if not index_list:
            raise ValueError("indices must name at least one frame, got an empty sequence")
        bad = [i for i in index_list if not 0 <= i < self.num_frames]
        if bad:
            raise ValueError(
                f"indices must lie in [0, {self.num_frames}) for {self.source_name}, got out-of-range {bad[:5]}"
            )
        while True:
            try:
                frames = self._backend.get_frames(index_list)
            except Exception as error:
                self._failures.append(f"{self._backend.name}: {type(error).__name__}: {error}")
                # "auto" retries with the next library: decord and PyAV bundle different FFmpeg builds and
                # one sometimes reads what the other cannot.
                self._backend.close()
                self._backend = None
                self._backend = self._open_next(self._remaining)
                continue
            break
        if frames.shape[0] != len(index_list):  # guards against a backend silently returning fewer frames
            raise VideoDecodeError(
                self.source_name,
                f"{self._backend.name} returned {frames.shape[0]} frames for {len(index_list)} indices",
            )
        self._frame_size = tuple(frames.shape[-2:])
        return frames

    def close(self) -> None:
        """Release the decoder (file handles and buffers)."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def get_video_info(source: VideoSource, backend: str = "auto", **reader_kwargs) -> VideoInfo:
    """Frame count, fps and frame size of `source`, decoding at most one frame (decord needs one for the size)."""
    with VideoReader(source, backend=backend, **reader_kwargs) as reader:
        return reader.info


def read_video(
    source: VideoSource,
    indices: Sequence[int] | np.ndarray | Callable[[int], Sequence[int]] | None = None,
    backend: str = "auto",
    **reader_kwargs,
) -> tuple[torch.Tensor, VideoInfo, np.ndarray]:
    """Decode the chosen frames of a video in one call.

    Args:
        source: see `VideoReader`.
        indices: frame indices; or a function of the video's frame count returning them, e.g.
            `lambda n: tsn_indices(8, n)`; or None for every frame.
        backend: "auto", "decord" or "pyav".
    Returns:
        (frames, info, indices): frames is torch.uint8 (T, 3, H, W); indices is the int64 array decoded.
    """
    with VideoReader(source, backend=backend, **reader_kwargs) as reader:
        if indices is None:
            chosen = np.arange(reader.num_frames)
        elif callable(indices):
            chosen = np.asarray(indices(reader.num_frames), dtype=np.int64)
        else:
            chosen = np.asarray(indices, dtype=np.int64)
        frames = reader.get_frames(chosen)
        return frames, reader.info, chosen
