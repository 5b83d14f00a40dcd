"""Hostile files never end a run: every image and video loader either returns pixels or raises the
sample's DataError, whatever the bytes. A fuzz test mutates valid files of every format PIL writes
(and short videos) and feeds them to the loaders a run uses; the cases found by hand are rows of
their own, end to end through a run.

PR_EVAL_LOADER_FUZZ sets how many mutated images are tried (default 2,000, so CI stays quick;
10,000 and more were run by hand, see the README), PR_EVAL_VIDEO_FUZZ how many videos (default 60).
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script, noise_image
from PIL import Image

from pr_eval.errors import DataError
from pr_eval.data.imaging import load_image
from pr_eval.loop.steps import start
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.trajectory import DATA_ERROR, Sample
from pr_eval.data.video import read_frames

IMAGES = int(os.environ.get("PR_EVAL_LOADER_FUZZ", "2000"))
VIDEOS = int(os.environ.get("PR_EVAL_VIDEO_FUZZ", "60"))


def seeds_of_every_format() -> dict[str, bytes]:
    """A small valid file of each format PIL can write and read back here (EPS needs Ghostscript,
    PDF and PALM are write-only: skipped)."""
    Image.init()
    picture = noise_image(40, 30, seed=3)
    files = {}
    for fmt in sorted(Image.SAVE):
        for image in (picture, picture.convert("L"), picture.convert("1")):
            buffer = io.BytesIO()
            try:
                image.save(buffer, format=fmt)
            except Exception:  # noqa: BLE001 - a writer that needs a plugin or another mode
                continue
            try:
                load_image(io.BytesIO(buffer.getvalue()), name=fmt)
            except DataError:
                break
            files[fmt] = buffer.getvalue()
            break
    return files


SEEDS = seeds_of_every_format()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random damage: flipped bytes, a cut, inserted or deleted bytes, a garbled 4-byte field,
    or a huge number written into a header."""
    data = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:
        del data[rng.randrange(1, len(data)):]
    elif kind == 2:
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 3:
        at = rng.randrange(len(data))
        del data[at:at + rng.randint(1, 64)]
    elif kind == 4:
        at = rng.randrange(max(1, len(data) - 4))
        data[at:at + 4] = bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") for _ in range(4))
    else:
        at = rng.randrange(min(64, max(1, len(data) - 4)))
        data[at:at + 4] = struct.pack("<I", rng.choice([0, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 65500 * 65500 % 2 ** 32]))
    return bytes(data)


def test_every_format_pil_writes_is_in_the_seed_set():
    assert {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "DDS", "ICO", "TGA", "PPM", "QOI"} <= SEEDS.keys()
    assert len(SEEDS) >= 19


def test_mutated_images_load_or_fail_as_the_sample_s_data_error(tmp_path):
    rng = random.Random(20261207)
    formats = sorted(SEEDS)
    outcomes = {"loaded": 0, "data_error": 0}
    escaped = []
    for k in range(IMAGES):
        fmt = formats[k % len(formats)]
        path = tmp_path / f"f{k % 50}.{fmt.lower()}"
        path.write_bytes(mutate(SEEDS[fmt], rng))
        try:
            image = load_image(path)
            assert image.mode == "RGB"
            outcomes["loaded"] += 1
        except DataError as exc:
            assert "\n" not in str(exc)
            outcomes["data_error"] += 1
        except BaseException as exc:  # noqa: BLE001 - what the test is looking for
            escaped.append((fmt, k, f"{type(exc).__name__}: {exc}"))
    assert not escaped, escaped[:10]
    assert outcomes["data_error"] > IMAGES // 10 and outcomes["loaded"] > 0


def png_with_garbled_second_idat() -> bytes:
    """The case found by hand: a PNG that opens, then raises SyntaxError while decoding."""
    raw = noise_image(64, 64, seed=1).tobytes()
    rows = b"".join(b"\x00" + raw[y * 192:(y + 1) * 192] for y in range(64))
    compressed = zlib.compress(rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    half = len(compressed) // 2
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", compressed[:half]) + chunk(b"I\x00AT", compressed[half:]) + chunk(b"IEND", b""))


def test_the_cases_found_by_hand_are_each_one_line(tmp_path):
    png = tmp_path / "garbled.png"
    png.write_bytes(png_with_garbled_second_idat())
    with pytest.raises(DataError, match=r"unreadable image .*garbled\.png: .*") as found:
        load_image(png)
    assert "\n" not in str(found.value)
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    with pytest.raises(DataError, match=r"not a regular file: .*pipe\.png"):
        load_image(pipe)  # would block forever on open
    gif = tmp_path / "clip.mp4"
    Image.new("RGB", (32, 32)).save(gif, format="GIF")  # a GIF named .mp4: decord's DECORDError
    with pytest.raises(DataError, match=r"unreadable video .*clip\.mp4"):
        read_frames(gif)


def test_a_run_records_them_per_sample_and_goes_on(tmp_path):
    """Through the loop's one boundary: each hostile file is its sample's data_error."""
    png = tmp_path / "garbled.png"
    png.write_bytes(png_with_garbled_second_idat())
    gif = tmp_path / "clip.mp4"
    Image.new("RGB", (32, 32)).save(gif, format="GIF")

    def boom():
        raise NotImplementedError("a decoder nobody wrapped")

    samples = [Sample("t", "png", "q", "A", load_images=lambda: [load_image(png)]),
               Sample("t", "gif", "q", "A", load_images=lambda: read_frames(gif), is_video=True),
               Sample("t", "raw", "q", "A", load_images=boom),
               Sample("t", "ok", "q", "A", load_images=lambda: [noise_image(60, 60)])]
    trajs = {s.sample_id: start(s, P) for s in samples}
    assert trajs["png"].stop_reason == DATA_ERROR and "garbled.png" in trajs["png"].error
    assert trajs["gif"].stop_reason == DATA_ERROR and "unreadable video" in trajs["gif"].error
    assert trajs["raw"].stop_reason == DATA_ERROR and trajs["raw"].error == "NotImplementedError: a decoder nobody wrapped"
    assert trajs["ok"].stop_reason is None and trajs["ok"].error is None


@pytest.mark.parametrize("error", ["NameError(\"name 'to_rgb' is not defined\")", "ImportError('no module x')"])
def test_a_programming_error_of_our_own_stops_the_run(error):
    """The boundary is for what files and decoders raise. A NameError raised in pr-eval's own
    code is a bug that would lose every sample as bad data (it did once: a lazy import gone
    wrong made every image 'unreadable'), so it is raised; the same error from a library's frame
    is still the sample's data error, as is any other error of our code (a hostile input's)."""
    import pr_eval

    ours = compile(f"def load():\n    raise {error}\n", str(Path(pr_eval.__file__).parent / "imaging.py"), "exec")
    theirs = compile(f"def load():\n    raise {error}\n", "/usr/lib/python3/dist-packages/PIL/Image.py", "exec")
    namespaces = [{}, {}]
    exec(ours, namespaces[0])  # noqa: S102 - the test's own code, compiled under a pr_eval file name
    exec(theirs, namespaces[1])  # noqa: S102
    with pytest.raises((NameError, ImportError)):
        start(Sample("t", "bug", "q", "A", load_images=lambda: namespaces[0]["load"]()), P)
    traj = start(Sample("t", "lib", "q", "A", load_images=lambda: namespaces[1]["load"]()), P)
    assert traj.stop_reason == DATA_ERROR and traj.error.startswith(error.split("(")[0])

    odd = compile("def load():\n    return None.size\n", str(Path(pr_eval.__file__).parent / "data.py"), "exec")
    exec(odd, namespaces[0])  # noqa: S102 - an AttributeError in our code: hostile data can cause one
    traj = start(Sample("t", "odd", "q", "A", load_images=lambda: namespaces[0]["load"]()), P)
    assert traj.stop_reason == DATA_ERROR and traj.error.startswith("AttributeError: 'NoneType'")


def test_mutated_videos_decode_or_fail_as_the_sample_s_data_error(tmp_path):
    make_samples = load_script("make_samples")
    frames = [np.asarray(noise_image(64, 48, seed=k)) for k in range(20)]
    clip = make_samples.write_video(tmp_path / "seed.mp4", frames, fps=10)
    data = clip.read_bytes()
    rng = random.Random(7)
    escaped = []
    for k in range(VIDEOS):
        path = tmp_path / f"v{k}.mp4"
        path.write_bytes(mutate(data, rng))
        try:
            decoded = read_frames(path, 4)
            assert len(decoded) == 4
        except DataError as exc:
            assert "\n" not in str(exc)
        except BaseException as exc:  # noqa: BLE001
            escaped.append((k, f"{type(exc).__name__}: {exc}"))
        finally:
            Path(path).unlink()
    assert not escaped, escaped[:10]
