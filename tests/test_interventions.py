"""The faithfulness probe's interventions (pr_eval.probe.interventions): masks cover exactly the
target boxes, before and after the protocol's resize; recolouring moves only the source colour's
pixels inside the boxes, exactly for pure colours; the counterfactual option is picked as documented."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from pr_eval.benchmarks.common import render_options
from pr_eval.data.imaging import fit_image
from pr_eval.probe.interventions import (BLANK, HUES, MASK_METHOD, METHOD_RECOLOUR, blank_like, box_pixels,
                                         counterfactual, mask_targets, parse_options, recolour)
from pr_eval.protocol import PIXEL_REASONER

PURE = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
# White, grey, black, and hues 30+ degrees from each of PURE's
OTHERS = [(255, 255, 255), (128, 128, 128), (0, 0, 0), (0, 255, 255), (255, 0, 255), (128, 0, 255)]
ZOOM = ("What color is the dot on the small white card?\n(A) red\n(B) green\n(C) blue\n(D) yellow\n"
        "Answer with the option's letter from the given choices directly.")

coordinate = st.floats(min_value=-20, max_value=84, allow_nan=False, allow_infinity=False)
odd_coordinate = st.one_of(coordinate, st.sampled_from([math.nan, math.inf, -math.inf]))
box = st.tuples(coordinate, coordinate, coordinate, coordinate)
# Corners in order (x1 <= x2, y1 <= y2), possibly of zero size or partly outside the image.
ordered_box = box.map(lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])))
any_box = st.one_of(box, st.tuples(odd_coordinate, odd_coordinate, odd_coordinate, odd_coordinate))


@st.composite
def noise(draw, low=8, high=64):
    """A random RGB noise image of a random size."""
    width, height = draw(st.integers(low, high)), draw(st.integers(low, high))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@st.composite
def palette_image(draw, colours):
    """A random image whose every pixel is one of `colours`."""
    width, height = draw(st.integers(8, 48)), draw(st.integers(8, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = np.array(colours, dtype=np.uint8)
    return Image.fromarray(table[rng.integers(0, len(colours), (height, width))], "RGB")


def covered(boxes, width: int, height: int) -> np.ndarray:
    """Pixels whose square [x, x+1) x [y, y+1) meets a finite, non-reversed box: written from the
    box definition, not from box_pixels."""
    xs, ys = np.arange(width)[None, :], np.arange(height)[:, None]
    inside = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        if all(math.isfinite(v) for v in (x1, y1, x2, y2)) and x1 <= x2 and y1 <= y2:
            inside |= (xs < x2) & (x1 < xs + 1) & (ys < y2) & (y1 < ys + 1)
    return inside


# --- Boxes -----------------------------------------------------------------------------------------

def test_box_pixels_rounds_outward_and_clips():
    assert box_pixels((2.2, 3.7, 5.0, 6.01), 10, 10) == (2, 3, 5, 7)
    assert box_pixels([-5, -1, 4, 30], 10, 12) == (0, 0, 4, 12)
    assert box_pixels((3.5, 3.5, 3.5, 3.5), 10, 10) == (3, 3, 4, 4)  # a point inside a pixel covers it


@pytest.mark.parametrize("bad", [(3, 3, 3, 8), (5, 1, 2, 8), (10, 0, 12, 5), (-4, 0, 0, 5),
                                 (math.nan, 0, 5, 5), (0, 0, math.inf, 5),
                                 (0, 5.5, 5, 5.2), (5.5, 0, 5.2, 5)])  # the last two: reversed in y, x
def test_box_pixels_none_for_empty_reversed_outside_or_not_finite(bad):
    assert box_pixels(bad, 10, 10) is None


@given(b=any_box, width=st.integers(1, 64), height=st.integers(1, 64))
def test_box_pixels_is_the_covered_rectangle(b, width, height):
    rect = box_pixels(b, width, height)
    inside = covered([b], width, height)
    if rect is None:
        assert not inside.any()
    else:
        left, top, right, bottom = rect
        expected = np.zeros((height, width), dtype=bool)
        expected[top:bottom, left:right] = True
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        assert (inside == expected).all()


# --- Masking -------------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(image=noise(), boxes=st.lists(any_box, min_size=1, max_size=4))
def test_mask_fills_exactly_the_boxes_with_the_mean_colour(image, boxes):
    original = image.tobytes()
    before = np.asarray(image).copy()
    inside = covered(boxes, image.width, image.height)
    if not inside.any():
        with pytest.raises(ValueError, match="no target box inside the image"):
            mask_targets(image, boxes)
        return
    masked = mask_targets(image, boxes)
    after = np.asarray(masked)
    assert masked.mode == "RGB" and masked.size == image.size
    assert image.tobytes() == original  # the input is untouched
    assert (after[~inside] == before[~inside]).all()
    fill = after[inside]
    assert (fill == fill[0]).all()
    assert np.abs(fill[0].astype(float) - before.reshape(-1, 3).mean(axis=0)).max() <= 0.5


def test_mask_of_a_two_colour_image():
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    pixels[:, 4:] = 200  # mean 100 per channel
    masked = np.asarray(mask_targets(Image.fromarray(pixels), [(0.5, 1, 2, 3), (50, 50, 60, 60)]))
    assert (masked[1:3, 0:2] == 100).all()
    assert (np.delete(masked.reshape(-1, 3), [8, 9, 16, 17], axis=0) == np.delete(
        pixels.reshape(-1, 3), [8, 9, 16, 17], axis=0)).all()
    assert "mean colour" in MASK_METHOD and "before the protocol's resize" in MASK_METHOD


def test_other_modes_are_masked_as_the_loop_converts_them():
    gray = Image.fromarray(np.array([[0, 0, 90, 90]], dtype=np.uint8), "L")
    masked = np.asarray(mask_targets(gray, [(0, 0, 1, 1)]))
    assert masked[0].tolist() == [[45] * 3, [0] * 3, [90] * 3, [90] * 3]
    clear = Image.new("RGBA", (2, 2), (10, 20, 30, 0))  # transparent: laid on white, as to_rgb does
    assert (np.asarray(mask_targets(clear, [(0, 0, 1, 1)])) == 255).all() and clear.mode == "RGBA"


def well_inside(rect: tuple[int, int], stored: int, shown: int) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis: which shown pixels' bicubic taps all fall inside the rectangle [a, b) of
    stored pixels, and which all fall outside it. PIL's bicubic reads source pixels within 2 of a
    shown pixel's centre, 2 shown pixels' worth when shrinking; 0.5 more covers the pixel's width
    and 2 shown pixels more the rounding."""
    a, b = rect
    scale = shown / stored
    margin = 2.0 * max(1.0, 1.0 / scale) + 0.5 + 2.0 / scale
    centre = (np.arange(shown) + 0.5) / scale
    return (centre >= a + margin) & (centre <= b - margin), (centre <= a - margin) | (centre >= b + margin)


def check_masked_after_resize(image: Image.Image, target: tuple[int, int, int, int]) -> tuple[int, int]:
    """The mask, shown as the protocol shows inputs, is the target box: pixels well inside are the
    fill colour, pixels well outside are the resized original's. Returns how many of each."""
    bounds = PIXEL_REASONER.input_pixels
    masked = mask_targets(image, [target])
    fill = np.asarray(masked)[target[1], target[0]]
    shown, reference = np.asarray(fit_image(masked, bounds)), np.asarray(fit_image(image, bounds))
    assert shown.shape == reference.shape
    height, width = shown.shape[:2]
    in_x, out_x = well_inside((target[0], target[2]), image.width, width)
    in_y, out_y = well_inside((target[1], target[3]), image.height, height)
    inside = in_y[:, None] & in_x[None, :]
    outside = out_y[:, None] | out_x[None, :]
    assert (shown[inside] == fill).all()
    assert (shown[outside] == reference[outside]).all()
    return int(inside.sum()), int(outside.sum())


@settings(max_examples=25, deadline=None)
@given(image=noise(16, 64), data=st.data())
def test_the_masked_region_is_the_box_after_the_protocols_resize(image, data):
    x1 = data.draw(st.integers(0, image.width - 10))
    y1 = data.draw(st.integers(0, image.height - 10))
    x2 = data.draw(st.integers(x1 + 10, image.width))
    y2 = data.draw(st.integers(y1 + 10, image.height))
    assume(x1 >= 4 or y1 >= 4 or x2 <= image.width - 4 or y2 <= image.height - 4)  # room outside
    assert min(check_masked_after_resize(image, (x1, y1, x2, y2))) > 0


def test_the_masked_region_is_the_box_when_the_protocol_shrinks_the_image():
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (2600, 2700, 3), dtype=np.uint8), "RGB")
    assert image.width * image.height > PIXEL_REASONER.input_pixels.max_pixels  # it is shrunk
    assert min(check_masked_after_resize(image, (1000, 700, 1400, 1500))) > 0


# --- Blank -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_blank_like_is_mid_gray_of_the_same_size(mode):
    image = Image.new(mode, (37, 11))
    blank = blank_like(image)
    assert blank.mode == "RGB" and blank.size == (37, 11) and BLANK == (128, 128, 128)
    assert (np.asarray(blank) == 128).all()


# --- Recolouring -----------------------------------------------------------------------------------

pairs = st.sampled_from([(s, t) for s in PURE for t in PURE if s != t])


def scaled(colour, level):
    return tuple(c * level // 255 for c in colour)


@settings(max_examples=150, deadline=None)
@given(pair=pairs, level=st.sampled_from([255, 200, 128, 60]), data=st.data())
def test_pure_colours_map_exactly_inside_the_boxes_only(pair, level, data):
    source, target = pair
    colours = [scaled(c, level) for c in PURE.values()] + OTHERS
    image = data.draw(palette_image(colours))
    boxes = data.draw(st.lists(ordered_box, min_size=1, max_size=3))
    inside = covered(boxes, image.width, image.height)
    assume(inside.any())
    original = image.tobytes()
    out, changed = recolour(image, boxes, source, target)
    before, after = np.asarray(image), np.asarray(out)
    assert image.tobytes() == original
    is_source = (before == scaled(PURE[source], level)).all(axis=-1) & inside
    assert (after[is_source] == scaled(PURE[target], level)).all()
    assert (after[~is_source] == before[~is_source]).all()
    assert changed == int(is_source.sum())


@pytest.mark.parametrize("source", PURE)
@pytest.mark.parametrize("target", PURE)
def test_each_pure_colour_becomes_each_other(source, target):
    if source == target:
        return
    image = Image.new("RGB", (3, 2), PURE[source])
    out, changed = recolour(image, [(0, 0, 3, 2)], source, target)
    assert changed == 6 and set(map(tuple, np.asarray(out).reshape(-1, 3).tolist())) == {PURE[target]}


@settings(max_examples=100, deadline=None)
@given(pair=pairs, data=st.data())
def test_round_trip_on_pure_colours(pair, data):
    source, target = pair
    image = data.draw(palette_image([c for name, c in PURE.items() if name != target] + OTHERS[:3]))
    boxes = data.draw(st.lists(ordered_box, min_size=1, max_size=3))
    assume(covered(boxes, image.width, image.height).any())
    there, _ = recolour(image, boxes, source, target)
    back, _ = recolour(there, boxes, target, source)
    assert back.tobytes() == image.tobytes()


@settings(max_examples=150, deadline=None)
@given(image=noise(8, 32), boxes=st.lists(ordered_box, min_size=1, max_size=3), pair=st.sampled_from(
    [(s, t) for s in HUES for t in HUES if HUES[s] != HUES[t]]), tolerance=st.floats(0, 60),
    min_saturation=st.floats(0, 1), min_value=st.floats(0, 1))
def test_recolour_agrees_with_colorsys(image, boxes, pair, tolerance, min_saturation, min_value):
    """On noise: a pixel moves iff colorsys says it has the source hue (within the tolerance) and
    enough saturation and value, and then it has the target hue with its saturation and value."""
    source, target = pair
    inside = covered(boxes, image.width, image.height)
    assume(inside.any())
    out, changed = recolour(image, boxes, source, target, tolerance, min_saturation, min_value)
    before, after = np.asarray(image), np.asarray(out)
    assert (after[~inside] == before[~inside]).all()
    assert changed == int((before != after).any(axis=-1).sum())
    for (y, x) in zip(*np.nonzero(inside)):
        rgb = tuple(int(c) for c in before[y, x])
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
        distance = abs(h * 360 - HUES[source]) % 360
        distance = min(distance, 360 - distance)
        if min(abs(distance - tolerance), abs(s - min_saturation), abs(v - min_value)) < 1e-9:
            continue  # on a threshold: float rounding may go either way
        matches = s > 0 and s >= min_saturation and v >= min_value and distance <= tolerance
        if not matches:
            assert tuple(after[y, x]) == rgb
        else:
            expected = colorsys.hsv_to_rgb(HUES[target] / 360, s, v)
            assert max(abs(a - e * 255) for a, e in zip(after[y, x], expected)) <= 0.5 + 1e-6


def test_white_grey_and_other_hues_are_left_alone():
    row = [(255, 255, 255), (128, 128, 128), (0, 0, 0), (0, 0, 255), (240, 200, 200), (230, 20, 20)]
    image = Image.fromarray(np.array([row], dtype=np.uint8), "RGB")
    out, changed = recolour(image, [(0, 0, 6, 1)], "Red ", "GREEN")
    assert changed == 1  # the pale pink (240, 200, 200) has saturation 0.17, below the minimum
    assert (np.asarray(out)[0, :5] == np.asarray(image)[0, :5]).all()
    assert tuple(np.asarray(out)[0, 5]) == (20, 230, 20)
    assert "hue" in METHOD_RECOLOUR


def test_thresholds_are_inclusive_and_the_count_is_of_pixels_that_changed():
    row = [(200, 100, 100), (200, 101, 101), (51, 0, 0), (50, 0, 0), (200, 100, 0), (200, 0, 100)]
    image = Image.fromarray(np.array([row], dtype=np.uint8), "RGB")  # saturation 0.5, 0.495, value 0.2,
    # 0.196, hue 30 and 330: each on or just past a threshold
    out, changed = recolour(image, [(0, 0, 6, 1)], "red", "blue", 30.0, 0.5, 0.2)
    assert [tuple(p) for p in np.asarray(out)[0]] == [(100, 100, 200), (200, 101, 101), (0, 0, 51),
                                                      (50, 0, 0), (0, 0, 200), (0, 0, 200)]
    assert changed == 4
    out, changed = recolour(image, [(0, 0, 6, 1)], "red", "orange", 30.0, 0.5, 0.2)
    assert tuple(np.asarray(out)[0, 4]) == (200, 100, 0)  # chosen, but already orange: not counted
    assert changed == 3


def test_recolour_refuses_unknown_colours_same_hues_and_no_box():
    image = Image.new("RGB", (4, 4), (255, 0, 0))
    with pytest.raises(ValueError, match="known: red, orange"):
        recolour(image, [(0, 0, 4, 4)], "brown", "red")
    with pytest.raises(ValueError, match="same hue"):
        recolour(image, [(0, 0, 4, 4)], "purple", "violet")
    with pytest.raises(ValueError, match="no target box"):
        recolour(image, [(5, 5, 9, 9)], "red", "green")


# --- Which edit a question allows --------------------------------------------------------------------

def test_the_zoom_question():
    options = parse_options(ZOOM)
    assert options == {"A": "red", "B": "green", "C": "blue", "D": "yellow"}
    assert counterfactual(options, "A") == ("B", "red", "green")
    assert counterfactual(options, "D") == ("A", "yellow", "red")
    assert counterfactual(options, "C") == ("D", "blue", "yellow")


def test_parse_options_takes_the_last_run_from_a():
    question = "Is (B) the same as\n(B) this?\n(A) red\n(B) blue\nAnswer."
    assert parse_options(question) == {"A": "red", "B": "blue"}
    assert parse_options("(A) red\n(C) blue") == {}
    assert parse_options("What colour?") == {}
    assert parse_options("(A) red\n(B) blue\n(A) green\n(B) pink\n(C) cyan") == {"A": "green", "B": "pink",
                                                                                   "C": "cyan"}


def test_a_vstar_question_skips_options_without_a_hue():
    question = render_options("What is the color of the cross?", ["blue", "pink", "white", "green"])
    options = parse_options(question)
    assert options == {"A": "blue", "B": "pink", "C": "white", "D": "green"}
    assert counterfactual(options, "B") == ("D", "pink", "green")
    assert counterfactual(options, "C") is None  # white has no hue
    assert counterfactual({"A": "Purple", "B": "violet", "C": "black"}, "A") is None  # same hue, no hue
    assert counterfactual({"A": " Purple ", "B": "violet", "C": "Orange"}, "B") == ("C", "violet", "orange")
    with pytest.raises(ValueError):
        counterfactual(options, "E")


option = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12).map(
    str.strip).filter(bool)


stem = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30).filter(lambda q: "(" not in q)


@given(question=stem, options=st.lists(st.one_of(st.sampled_from(sorted(HUES) + ["white", "Red"]), option),
                                       min_size=2, max_size=6))
def test_parse_options_reads_what_render_options_writes(question, options):
    assert parse_options(render_options(question, options)) == dict(zip("ABCDEF", options))


@given(options=st.lists(st.sampled_from(sorted(HUES) + ["white", "black", "brown"]), min_size=2, max_size=6),
       data=st.data())
def test_counterfactual_is_the_next_option_of_another_hue(options, data):
    letters = "ABCDEF"[:len(options)]
    answer = data.draw(st.sampled_from(letters))
    by_letter = dict(zip(letters, options))
    found = counterfactual(by_letter, answer)
    source = by_letter[answer]
    later = [by_letter[letters[(letters.index(answer) + k) % len(letters)]] for k in range(1, len(letters))]
    other = [text for text in later if text in HUES and source in HUES and HUES[text] != HUES[source]]
    if not other:
        assert found is None
        return
    letter, was, becomes = found
    assert (was, becomes) == (source, other[0]) and by_letter[letter] == becomes
    skipped = later[:later.index(becomes)]
    assert all(text not in HUES or HUES[text] == HUES[source] for text in skipped)


# --- Repainting a benchmark's own colours (zoom) -----------------------------------------------------

@given(image=palette_image([(225, 30, 30), (30, 175, 40), (255, 255, 255), (128, 128, 128)]),
       boxes=st.lists(ordered_box, min_size=1, max_size=3))
def test_repaint_changes_exactly_the_source_colour_inside_the_boxes(image, boxes):
    from pr_eval.probe.interventions import repaint

    before = np.asarray(image).copy()
    inside = covered(boxes, image.width, image.height)
    assume(inside.any())
    out, changed = repaint(image, boxes, (225, 30, 30), (30, 175, 40))
    after = np.asarray(out)
    source = (before == (225, 30, 30)).all(axis=-1)
    assert (after[~inside] == before[~inside]).all()                      # nothing outside the boxes
    assert (after[inside & ~source] == before[inside & ~source]).all()    # nor any other colour inside
    assert (after[inside & source] == (30, 175, 40)).all()                # the source colour, repainted
    assert changed == int((inside & source).sum()) and (np.asarray(image) == before).all()
