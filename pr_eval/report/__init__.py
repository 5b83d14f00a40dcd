"""What a person reads of a run: the text tables and the self-contained HTML report (step 4).

    tables.py    the text tables `pr-eval` prints at the end (scores, tool use)
    view.py      the run folder read once for the page: `RunView` and its `SampleView`s
    page.py      the page: `write_report`
    charts.py    the score and tool tables as HTML, and small SVG charts
    pictures.py  the images a model saw, inlined small, with its crop boxes drawn
    viewer.py    the trajectory viewer: one card per sample, turn by turn
    judge.py     the "Judge and rules" section
    escape.py    text from a model or a dataset, made safe to show

Its public face (pr_eval.faces): the names below, imported on first use.
"""

from ..faces import face

__getattr__, __all__ = face(__name__, {"write_report": "page"})
