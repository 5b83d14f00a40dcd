"""pr-eval: evaluation of models that reason in pixel space, one room per step of the flow.

    dataset row  ->  prompt  ->  trajectory  ->  answer, score  ->  run folder  ->  report, comparison
    data/            families/   loop/           scoring/           run/            report/
    benchmarks/                  engines/        judge/                             compare/
                                                                                    leaderboard/

    cli/         `pr-eval` and its commands (run, ask, report, compare, check, submit, table, ...)
    data/        where a benchmark's rows live, read and turned into Samples
    benchmarks/  the benchmark registry: one module per benchmark (its schema, its scorer)
    families/    the model families' protocols: prompts, call grammars, caps, verdicts, judges
    loop/        the multi-turn loop: generate, parse the call, run the tool, feed back
    engines/     vLLM (offline), OpenAI-compatible servers, transformers
    lmms/        the bridge to lmms-eval: the task class of tasks/*.yaml and the model adapter
    run/         one evaluation run and its folder: journal, resume, results
    scoring/     answers, verdicts, tool-use and grounding figures
    judge/       the optional LLM judges, beside the rules
    report/      the text tables and the HTML report
    compare/     comparisons, the regression gate, leaderboard submissions
    leaderboard/ a static site from a folder of submissions: intake, ranking, pages
    probe/       does the answer come from the pixels? interventions and the faithfulness card

At the root, what every room shares: `trajectory` (the one record that flows and is written to
disk), `protocol` (the settings, named and fingerprinted), `errors`, `files`, `models` /
`tiny_model` (model names and the built-in small models), and `faces` (each room's public face).
"""

__version__ = "0.1.0"
