"""Video samples: frame choice, decoding with decord, frame folders, and every way a video sample
can be unusable (missing, truncated or corrupt file, missing frame image, too few frames) ending
as a DataError with its reason while the other samples still load.

Videos are generated with OpenCV (mp4v in .mp4, MJPG in .avi); each frame's gray level tells its
index, so a test can check which frames were decoded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import load_script
from hypothesis import given
from hypothesis import strategies as st

from pr_eval.data import load as data
from pr_eval.data.load import DataError, load_samples, read_rows, resolve
from pr_eval.data.video import NUM_FRAMES, frame_indices, read_frames

ROOT = Path(__file__).resolve().parent.parent
cv2 = pytest.importorskip("cv2")  # writes the test videos


make_samples = load_script("make_samples")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """coded.mp4 / coded.avi: 40 frames at 10 fps; short.mp4: 12 frames; frames/: 30 JPEGs."""
    folder = tmp_path_factory.mktemp("videos")
    frames = make_samples.coded_frames()
    make_samples.write_video(folder / "coded.mp4", frames)
    make_samples.write_video(folder / "coded.avi", frames, codec="MJPG")
    make_samples.write_video(folder / "short.mp4", frames[:12])
    (folder / "frames").mkdir()
    for k, frame in enumerate(frames[:30], start=1):
        make_samples.Image.fromarray(frame).save(folder / "frames" / f"{k:05d}.jpg", quality=90)
    return folder


def decoded(images) -> list[int]:
    return [make_samples.frame_index(image) for image in images]


# --- Choosing frames ------------------------------------------------------------------------------

def test_frame_indices_spread_over_the_whole_video():
    assert frame_indices(40, 10.0) == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28, 31, 33, 36, 38]
    assert frame_indices(16, 10.0) == list(range(16))


def test_frame_indices_within_a_window():
    assert frame_indices(40, 10.0, start=1.0, end=2.5) == list(range(10, 26))
    # A window shorter than 16 frames repeats frames, as MVBench's reference loader does.
    assert frame_indices(40, 10.0, start=3.0) == [30, 30, 31, 32, 32, 33, 34, 34, 35, 35, 36, 37, 37, 38, 39, 39]
    assert frame_indices(40, 10.0, start=-1.0, end=-1.0) == frame_indices(40, 10.0)  # -1: no bound
    assert frame_indices(40, 10.0, end=100.0) == frame_indices(40, 10.0)  # clamped to the video


def test_frame_indices_refuse_short_videos_and_outside_windows():
    with pytest.raises(DataError, match="the video has 12 frame\\(s\\), fewer than the 16"):
        frame_indices(12, 10.0)
    with pytest.raises(DataError, match=r"the window 5\.5\.\.9 s lies outside the video \(40 frames, 4\.00 s\)"):
        frame_indices(40, 10.0, start=5.5, end=9.0)


@given(total=st.integers(16, 5000), fps=st.floats(1.0, 60.0),
       start=st.one_of(st.none(), st.floats(0, 50)), length=st.floats(0, 100))
def test_frame_indices_are_sorted_and_inside_the_window(total, fps, start, length):
    end = None if start is None else start + length
    try:
        indices = frame_indices(total, fps, 16, start, end)
    except DataError:
        assert start is not None and round(start * fps) > min(total - 1, round(end * fps))
        return
    assert len(indices) == 16 and indices == sorted(indices)
    first = 0 if start is None else round(start * fps)
    last = total - 1 if end is None else min(total - 1, round(end * fps))
    assert first <= indices[0] and indices[-1] <= last
    if last - first + 1 >= 16:
        assert len(set(indices)) == 16


# --- Decoding --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["coded.mp4", "coded.avi"])
def test_read_frames_decodes_the_chosen_frames(videos, name):
    images = read_frames(videos / name)
    assert len(images) == NUM_FRAMES and all(im.mode == "RGB" and im.size == (320, 120) for im in images)
    assert decoded(images) == frame_indices(40, 10.0)
    assert decoded(read_frames(videos / name, start=1.0, end=2.5)) == list(range(10, 26))


def test_read_frames_from_a_frame_folder(videos):
    """MVBench's TVQA clips: 00001.jpg ... at 3 frames per second."""
    images = read_frames(videos / "frames", start=2.0, end=9.0)
    assert decoded(images) == [6, 8, 9, 10, 12, 13, 14, 16, 17, 19, 20, 21, 23, 24, 25, 27]
    (videos / "empty").mkdir(exist_ok=True)
    with pytest.raises(DataError, match="holds no .jpg/.png frames"):
        read_frames(videos / "empty")


def test_unusable_videos_say_why(videos, tmp_path):
    payload = (videos / "coded.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(payload[: len(payload) // 2])
    (tmp_path / "garbage.mp4").write_bytes(b"\x00not a video" * 200)
    avi = (videos / "coded.avi").read_bytes()
    (tmp_path / "truncated.avi").write_bytes(avi[: len(avi) * 3 // 10])
    with pytest.raises(DataError, match="unreadable video .*truncated.mp4"):
        read_frames(tmp_path / "truncated.mp4")
    with pytest.raises(DataError, match="unreadable video .*garbage.mp4"):
        read_frames(tmp_path / "garbage.mp4")
    with pytest.raises(DataError, match="fewer than the 16 a sample needs \\(truncated\\?\\)"):
        read_frames(tmp_path / "truncated.avi")
    with pytest.raises(DataError, match="fewer than the 16"):
        read_frames(videos / "short.mp4")
    with pytest.raises(DataError, match="video file not found: .*missing.mp4"):
        read_frames(tmp_path / "missing.mp4")


# --- Video rows: Pixel-Reasoner's frame lists and official video files ----------------------------

@pytest.fixture
def mvbench_copy(tmp_path) -> Path:
    """A private copy of the bundled MVBench sample set (16 frame JPEGs per row)."""
    return Path(shutil.copytree(data.SAMPLES_DIR / "mvbench", tmp_path / "mvbench"))


def test_missing_frame_fails_only_its_sample_and_a_short_frame_list_runs(mvbench_copy, tmp_path):
    from pr_eval.lmms.task import _doc, doc_to_visual

    (mvbench_copy / "images" / "mvbench-moving_count-0" / "frame_04.jpg").unlink()
    (mvbench_copy / "images" / "mvbench-scene_transition-1" / "frame_09.jpg").write_bytes(b"\x00broken" * 50)
    (parquet,) = mvbench_copy.glob("*.parquet")
    table = pq.read_table(parquet).to_pandas()
    table.at[1, "image"] = list(table.at[1, "image"])[:15]
    table.to_parquet(parquet)
    source = resolve("mvbench", str(mvbench_copy), cache_dir=tmp_path / "cache")
    docs = {doc["qid"]: doc for doc in (_doc(row, source) for row in read_rows(source))}
    with pytest.raises(DataError, match=r"frame 5 of 16: image file not found: .*frame_04\.jpg"):
        doc_to_visual(docs["mvbench-moving_count-0"])
    with pytest.raises(DataError, match=r"frame 10 of 16: unreadable image .*frame_09\.jpg"):
        doc_to_visual(docs["mvbench-scene_transition-1"])
    assert len(doc_to_visual(docs["mvbench-moving_direction-1"])) == 15  # run as listed, as the reference runs it
    broken = {"mvbench-moving_count-0", "mvbench-scene_transition-1", "mvbench-moving_direction-1"}
    for qid, doc in docs.items():
        if qid not in broken:
            assert len(doc_to_visual(doc)) == 16
    _, samples = load_samples("mvbench", str(mvbench_copy), cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="frame 5 of 16"):
        next(s for s in samples if s.sample_id == "mvbench-moving_count-0").load_images()


def test_official_video_rows_decode_16_frames_and_a_truncated_one_fails_alone(tmp_path):
    from pr_eval.lmms.task import _doc, doc_to_visual

    folder = make_samples.make_mvbench_official(tmp_path / "mvbench", layout="original", leak_items=2)
    clip = folder / "video/clevrer/video_validation/video_10001.mp4"
    clip.write_bytes(clip.read_bytes()[:3000])
    source = resolve("mvbench", f"official:{folder}", cache_dir=tmp_path / "cache")
    docs = {doc["qid"]: doc for doc in (_doc(row, source) for row in read_rows(source))}
    assert all(doc["is_video"] and doc["image"] == [] and doc["video"] for doc in docs.values())
    with pytest.raises(DataError, match="unreadable video .*video_10001.mp4"):
        doc_to_visual(docs["mvbench-moving_direction-1"])
    whole = doc_to_visual(docs["mvbench-moving_direction-0"])
    assert len(whole) == 16 and decoded(whole) == frame_indices(40, 10.0)
    bounded = docs["mvbench-action_sequence-0"]
    assert (bounded["video_start"], bounded["video_end"]) == (1.0, 2.5)
    assert decoded(doc_to_visual(bounded)) == list(range(10, 26))
    episodic = docs["mvbench-episodic_reasoning-0"]  # a folder of frames at 3 fps
    assert decoded(doc_to_visual(episodic)) == frame_indices(30, 3.0, start=2.0, end=9.0)
    _, samples = load_samples("mvbench", f"official:{folder}", cache_dir=tmp_path / "cache")
    assert samples[0].is_video and samples[0].meta["subtask"] == "action_sequence"
    assert len(samples[0].load_images()) == 16
