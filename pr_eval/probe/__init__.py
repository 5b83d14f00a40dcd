"""Does the answer come from the pixels? A faithfulness probe: the protocol beside its interventions.

    interventions.py  the edits, as pure functions: target boxes masked, colours recoloured,
                      blank crops (what each shows, and what it cannot)
    variants.py       a protocol under an intervention: a named, fingerprinted variant, and what
                      it does to a sample (the loop) and to a crop (the families' add_image)
    card.py           the card: accuracy under each intervention beside the protocol's, paired
                      differences with intervals and tests, flips, follows-the-edit, derived figures
    page.py           probe.html, "Does it look?"

`pr-eval probe` (pr_eval.cli.probe) runs the variants with one engine and writes the card.

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"CATALOGUE": "variants", "build_card": "card", "card_text": "card",
                                       "variant": "variants"})
