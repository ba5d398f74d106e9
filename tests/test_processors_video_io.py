"""Decoding every kind of input with decord and PyAV, and every kind of bad input raising VideoDecodeError."""

import http.server
import io
import threading
import time

import numpy as np
import pytest
import torch

from processors import video_io
from processors.synthetic import encode_mp4
from processors.video_io import VideoDecodeError, VideoReader, fetch_url, frames_to_tchw, get_video_info, read_video

NUM_FRAMES, HEIGHT, WIDTH = 12, 48, 64


def grey_levels(num_frames=NUM_FRAMES):
    """Frame t is a flat grey of level 20 + 18 t, so a decoded frame tells which index it came from."""
    return 20 + 18 * np.arange(num_frames)


def frame_levels(frames: torch.Tensor) -> np.ndarray:
    return frames.float().mean(dim=(1, 2, 3)).numpy()


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "grey.mp4"
    frames = np.repeat(grey_levels()[:, None, None, None], 3, axis=3) * np.ones((1, HEIGHT, WIDTH, 1))
    encode_mp4(frames.astype(np.uint8), path, fps=8)
    return path


@pytest.fixture(scope="module")
def broken_files(video_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    data = video_file.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "not_a_video.mp4").write_bytes(b"this is a text file, not a video\n" * 20)
    # A "faststart" file (index first) cut in the middle: it opens, but its later frames are missing.
    faststart = folder / "faststart.mp4"
    import av

    with av.open(str(faststart), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
        for frame in noise:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    full = faststart.read_bytes()
    (folder / "cut_after_index.mp4").write_bytes(full[: int(len(full) * 0.6)])
    return {
        "truncated": folder / "truncated.mp4",
        "zero-byte": folder / "empty.mp4",
        "not a video": folder / "not_a_video.mp4",
        "missing path": folder / "missing.mp4",
        "truncated after the index": folder / "cut_after_index.mp4",
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""
    failures_left = 0

    def do_GET(self):
        if self.path == "/flaky.mp4" and _Handler.failures_left > 0:
            _Handler.failures_left -= 1
            self.send_error(503)
            return
        if self.path == "/trickle.mp4":  # announces a whole video, then sends one byte every 0.1 s
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            for byte in self.payload[:100]:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
                time.sleep(0.1)
            return
        if self.path == "/unannounced.mp4":  # no Content-Length: the size is only known while reading
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.payload)
            return
        if self.path == "/silent.mp4":  # never answers
            time.sleep(3)
            return
        if self.path not in ("/clip.mp4", "/flaky.mp4"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="module")
def http_base(video_file):
    _Handler.payload = video_file.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- good inputs


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_path_decodes_only_the_requested_frames_in_order(video_file, backend):
    with VideoReader(video_file, backend=backend) as reader:
        assert reader.info.num_frames == NUM_FRAMES and reader.info.fps == 8.0
        assert (reader.info.height, reader.info.width) == (HEIGHT, WIDTH)
        assert reader.info.backend == backend
        frames = reader.get_frames([11, 0, 5, 5])
    assert frames.dtype == torch.uint8 and frames.shape == (4, 3, HEIGHT, WIDTH)
    np.testing.assert_allclose(frame_levels(frames), grey_levels()[[11, 0, 5, 5]], atol=3)


def test_decord_and_pyav_give_the_same_pixels(video_file):
    a, _, _ = read_video(video_file, [0, 6, 11], backend="decord")
    b, _, _ = read_video(video_file, [0, 6, 11], backend="pyav")
    assert (a.int() - b.int()).abs().max() <= 2


def test_bytes_file_object_and_bytearray_sources(video_file):
    data = video_file.read_bytes()
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), open(video_file, "rb")):
        frames, info, indices = read_video(source, [1, 2])
        assert frames.shape == (2, 3, HEIGHT, WIDTH) and info.num_frames == NUM_FRAMES
        np.testing.assert_allclose(frame_levels(frames), grey_levels()[[1, 2]], atol=3)


def test_url_source(http_base):
    frames, info, _ = read_video(f"{http_base}/clip.mp4", [3])
    assert info.num_frames == NUM_FRAMES
    np.testing.assert_allclose(frame_levels(frames), grey_levels()[[3]], atol=3)


def test_url_retries_transient_server_errors(http_base):
    _Handler.failures_left = 1  # one 503, then success on the retry
    assert fetch_url(f"{http_base}/flaky.mp4", retries=2) == _Handler.payload
    assert _Handler.failures_left == 0


def test_url_that_trickles_fails_within_its_deadline(http_base):
    start = time.monotonic()
    with pytest.raises(VideoDecodeError, match=r"within the 1\.5 s deadline"):
        fetch_url(f"{http_base}/trickle.mp4", timeout=5, retries=3, deadline=1.5)
    assert time.monotonic() - start < 3.0  # not the ~10 s the trickle would take, and no retry after the deadline


def test_url_silent_server_fails_within_deadline_plus_one_read(http_base):
    start = time.monotonic()
    with pytest.raises(VideoDecodeError, match="download failed"):
        fetch_url(f"{http_base}/silent.mp4", timeout=0.5, retries=5, deadline=1.0)
    assert time.monotonic() - start < 2.5


def test_url_body_over_the_size_cap_is_refused(http_base):
    size = len(_Handler.payload)
    with pytest.raises(VideoDecodeError, match=f"announces {size} bytes, over max_bytes=100"):
        fetch_url(f"{http_base}/clip.mp4", max_bytes=100)
    with pytest.raises(VideoDecodeError, match="body passed max_bytes=100"):
        fetch_url(f"{http_base}/unannounced.mp4", max_bytes=100)
    assert fetch_url(f"{http_base}/unannounced.mp4", max_bytes=size) == _Handler.payload


@pytest.mark.parametrize("bad", [dict(deadline=0), dict(deadline=float("nan")), dict(timeout=-1),
                                 dict(max_bytes=0), dict(retries=-1), dict(retries=1.5)])
def test_url_limits_are_validated(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        fetch_url("http://127.0.0.1:9/x.mp4", **bad)


def test_numpy_thwc_and_torch_tchw_frames():
    frames = np.random.default_rng(0).integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    from_numpy, info, _ = read_video(frames, [4, 0])
    assert info.backend == "array" and info.num_frames == 5 and (info.height, info.width) == (20, 30)
    assert torch.equal(from_numpy, torch.from_numpy(frames[[4, 0]]).permute(0, 3, 1, 2))
    tchw = torch.from_numpy(frames).permute(0, 3, 1, 2)
    from_torch, _, _ = read_video(tchw, [4, 0])
    assert torch.equal(from_torch, from_numpy)


def test_grey_frames_become_rgb_and_layout_can_be_forced():
    grey = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5, 1)
    rgb = frames_to_tchw(grey)
    assert rgb.shape == (2, 3, 4, 5) and torch.equal(rgb[:, 0], rgb[:, 2])
    # (T, 3, H, 3) is ambiguous; an explicit layout decides.
    ambiguous = np.zeros((2, 3, 8, 3), np.uint8)
    assert frames_to_tchw(ambiguous, layout="TCHW").shape == (2, 3, 8, 3)
    assert frames_to_tchw(ambiguous, layout="THWC").shape == (2, 3, 3, 8)
    assert frames_to_tchw(ambiguous).shape == (2, 3, 3, 8)  # numpy defaults to THWC, as decoders return


def test_auto_falls_back_to_pyav_when_decord_is_missing(video_file, monkeypatch):
    monkeypatch.setattr(video_io, "decord", None)
    info = get_video_info(video_file)
    assert info.backend == "pyav" and info.num_frames == NUM_FRAMES


def test_auto_falls_back_to_pyav_when_decord_fails_on_the_frames(tmp_path):
    # decord 0.6.0 opens 48-pixel-wide videos but fails to copy their frames out; PyAV reads them.
    path = tmp_path / "narrow.mp4"
    encode_mp4(np.full((4, 32, 48, 3), 90, np.uint8), path)
    with pytest.raises(VideoDecodeError, match="decord"):
        read_video(path, [0], backend="decord")
    with VideoReader(path) as reader:
        frames = reader.get_frames([0, 3])
        assert reader.info.backend == "pyav"
    assert frames.shape == (2, 3, 32, 48) and abs(frames.float().mean() - 90) < 3


def test_sampling_function_can_choose_the_indices(video_file):
    frames, info, indices = read_video(video_file, lambda num_frames: [num_frames - 1])
    assert indices.tolist() == [NUM_FRAMES - 1]
    np.testing.assert_allclose(frame_levels(frames), grey_levels()[[-1]], atol=3)


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
@pytest.mark.parametrize("kind", ["truncated", "zero-byte", "not a video", "missing path", "truncated after the index"])
def test_every_broken_file_raises_video_decode_error_naming_the_source(broken_files, kind, backend):
    path = broken_files[kind]
    with pytest.raises(VideoDecodeError) as caught:
        with VideoReader(path, backend=backend) as reader:
            reader.get_frames(np.arange(reader.info.num_frames))
    assert path.name in str(caught.value) and caught.value.cause


def test_broken_bytes_and_empty_frames_raise_video_decode_error(broken_files):
    with pytest.raises(VideoDecodeError, match="0 bytes"):
        read_video(b"")
    with pytest.raises(VideoDecodeError, match="bytes"):
        read_video(broken_files["not a video"].read_bytes())
    with pytest.raises(VideoDecodeError, match="zero frames"):
        read_video(np.zeros((0, 8, 8, 3), np.uint8))


def test_missing_url_raises_video_decode_error_without_retrying(http_base):
    with pytest.raises(VideoDecodeError, match="404"):
        read_video(f"{http_base}/missing.mp4", retries=3)


def test_video_decode_error_is_a_value_error_and_survives_a_one_argument_rebuild():
    # DataLoader workers re-raise exceptions as type(error)(message).
    error = VideoDecodeError("'x.mp4'", "no such file")
    assert isinstance(error, ValueError)
    assert str(type(error)(str(error))) == str(error)


def test_bad_arguments_raise_value_errors(video_file):
    with pytest.raises(ValueError, match="backend"):
        VideoReader(video_file, backend="opencv")
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 12\)"):
        read_video(video_file, [12])
    with pytest.raises(ValueError, match="uint8"):
        read_video(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="source must be"):
        read_video(12345)
