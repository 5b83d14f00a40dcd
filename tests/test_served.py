"""The served-pixels check's pure parts (pr_eval.engines.served): what the probes cost at given
bounds, and the verdict on a server's counts, for any bounds and any chat template."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pr_eval.engines import served
from pr_eval.protocol import PIXEL_REASONER as P
from pr_eval.protocol import PixelBounds

bounds = st.builds(lambda lo, span: PixelBounds(lo * 784, (lo + span) * 784),
                   st.integers(4, 2000), st.integers(0, 20000))


def test_the_probes_cost_what_the_protocol_s_bounds_give():
    assert served.expected(P.engine_pixels) == {"small": 529, "large": 5002, "video": 529}
    assert served.expected(PixelBounds(3136, 12845056)) == {"small": 4, "large": 6348, "video": 4}


@given(bounds, st.integers(0, 5000))
def test_a_server_at_the_bounds_passes_whatever_its_template_adds(b, template):
    counts = {name: tokens + template for name, tokens in served.expected(b).items()}
    assert served.verdict(counts, b) is None


@given(bounds, bounds, st.integers(0, 5000))
def test_a_server_at_other_bounds_fails_exactly_when_the_counts_differ(want, have, template):
    counts = {name: tokens + template for name, tokens in served.expected(have).items()}
    a, b = served.expected(want), served.expected(have)
    differs = (a["large"] - a["small"], a["video"] - a["small"]) != (b["large"] - b["small"], b["video"] - b["small"])
    assert (served.verdict(counts, want) is not None) == differs


@given(st.dictionaries(st.sampled_from(["small", "large", "video"]), st.none() | st.integers(-5, 0)))
def test_missing_or_empty_counts_are_refused(counts):
    assert served.verdict(counts, P.engine_pixels) == "it reports no prompt token counts"
