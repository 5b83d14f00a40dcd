"""`pixel_reasoner`: the lmms-eval model that runs the multi-turn pixel-reasoning loop.

lmms-eval gives the model every request of a task at once; the adapter turns them into Samples,
runs them through the loop (by default continuously: each trajectory returns to the engine as soon as its own turn is done; `schedule=turn-sync` batches turn by turn) and answers
each request with its whole trajectory as JSON. The task's `process_results` reads the answer and
the tool use from that trajectory, and `--log_samples` keeps it in lmms-eval's sample records.

    lmms-eval --include_path tasks --model pixel_reasoner --model_args pretrained=tiny --tasks pr_vstar
    lmms-eval ... --model_args pretrained=TIGER-Lab/PixelReasoner-RL-v1,engine=openai,base_url=http://gpu1:8000/v1

With `engine=openai`, `base_url` may list several servers separated by `|`; `api_model` is the
name the server serves (default: `pretrained`), and the key is read from $OPENAI_API_KEY.
`schedule=` (continuous, turn-sync, one-at-a-time) chooses how trajectories share the engine
(see `pr_eval.loop.steps.run_samples`; default: the loop's).

Under a sampled protocol (`protocol.sampling`, e.g. pixel-reasoner-sampled with
`samples_per_question=K`), each request becomes K rollouts, each with its own seed
(`pr_eval.loop.sampling.rollout_seed` from `seed=`, the question and the rollout index); all rollouts
of all requests run through the loop together, and each request is answered with
`{"rollouts": [trajectory, ...]}` in rollout order (`pr_eval.scoring.metrics` scores each, then averages).

With a run store (`pr-eval` passes one; see `pr_eval.run.store`), every finished trajectory is saved
as it finishes, and a request whose sample (a sampled run: whose rollout) is already in the
store's journal is answered with the saved trajectory instead of being run again: that is how
`pr-eval --resume` finishes a run. The engine is built on first use, so a run whose samples are
all saved needs none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable

from lmms_eval.api.model import lmms
from tqdm import tqdm

from ..cli.compat import startup_refusal
from ..engines.config import MODEL_ARG_FIELDS, EngineConfig
from ..families import get_protocol
from ..loop.sampling import rollout_seed
from ..loop.steps import Guide, run_samples
from ..protocol import DEFAULT_PROTOCOL, Protocol, with_overrides
from ..run.store import RunStore, sample_key, stored_answer, trajectory_key
from ..trajectory import Sample, Trajectory

log = logging.getLogger(__name__)
# The engine's model_args (`pretrained` and `engine` are the constructor's own): EngineConfig's fields
ENGINE_MODEL_ARGS = ({f.name for f in dataclasses.fields(EngineConfig)} - {"kind", "model", "base_urls"}) | (
    set(MODEL_ARG_FIELDS) - {"pretrained", "engine"})


class PixelReasoner(lmms):
    is_simple = True

    def __init__(self, pretrained: str = "tiny", protocol: str | Protocol = DEFAULT_PROTOCOL,
                 batch_size: int | str = 64, max_tool_calls: int | None = None, max_images: int | None = None,
                 max_new_tokens: int | None = None, engine=None, engine_config: EngineConfig | None = None,
                 guide: Guide | None = None, on_trajectory: Callable[[Trajectory], None] | None = None,
                 schedule: str | None = None, store: RunStore | None = None,
                 samples_per_question: int | str | None = None, seed: int | str | None = 0, progress=None,
                 device: str | None = None, max_batch_size: int | None = None, **options):
        """`engine`: an engine to use (the caller closes it), or from lmms-eval's model_args the
        engine's kind (vllm, openai, hf); `engine_config`: the engine to build on first use (what
        `pr-eval` passes). Otherwise the engine is configured from model_args: `pretrained`, and
        every option EngineConfig names (base_url, api_model, max_model_len, ...). `device` and
        `max_batch_size` are lmms-eval's generic model_args, which the engines do not use."""
        super().__init__()
        refusal = startup_refusal()
        if refusal:  # lmms-eval's own CLI reaches us here; say it before any request is run
            raise RuntimeError(refusal)
        unused = sorted(set(options) - ENGINE_MODEL_ARGS)
        if unused:
            log.warning("pixel_reasoner ignores unknown model_args: %s", ", ".join(unused))
        base = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
        self.protocol = with_overrides(base, _int(max_tool_calls), _int(max_images), _int(max_new_tokens),
                                       _int(samples_per_question))
        self.seed = _int(seed) or 0
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 64
        self.guide = guide
        self.on_trajectory = on_trajectory
        self.schedule = schedule or None
        self.store = store
        self.progress = progress  # a shared tqdm bar to count on (None: the run's own)
        if engine is None and engine_config is None or isinstance(engine, str):  # model_args: engine=vllm|openai|hf
            engine_config = EngineConfig.from_model_args(
                pretrained=pretrained, engine=engine or "vllm",
                **{k: v for k, v in options.items() if k in ENGINE_MODEL_ARGS})
            engine = None
        if engine_config is not None and engine_config.max_concurrency is None:  # as many as a batch
            engine_config = dataclasses.replace(engine_config, max_concurrency=self.batch_size)
        self._engine = engine
        self.engine_config = engine_config

    @property
    def engine(self):
        """The engine, built on first use (resuming a run whose samples are all saved builds none)."""
        if self._engine is None:
            self._engine = self.engine_config.build(self.protocol)
        return self._engine

    @property
    def engine_built(self) -> bool:
        return self._engine is not None

    def generate_until(self, requests) -> list[str]:
        questions = [self._sample(request) for request in requests]
        runs = [rollout for sample in questions for rollout in self._rollouts(sample)]  # question order
        answers: dict[str, str] = {}
        if self.store is not None:
            self.store.record_data(self._data_records(requests))
            for sample in runs:
                key = sample_key(sample.task, sample.meta["doc_id"], sample.rollout)
                if key in self.store.done:
                    self.store.check_sample(key, sample.sample_id)
                    answers[key] = stored_answer(self.store.done[key])
            if answers:
                log.info("resuming: %d of %d trajectories are already done, running %d",
                         len(answers), len(runs), len(runs) - len(answers))
        todo = [s for s in runs if sample_key(s.task, s.meta["doc_id"], s.rollout) not in answers]
        engine = self.engine if todo else None  # built before the progress bar starts counting
        route = getattr(engine, "media_route", None)  # how the protocol's pixels reach the model
        if route and self.store is not None and self.store.info.get("media_route") != route:
            self.store.info["media_route"] = route
            self.store.save_info()
        unit = "rollout" if self.protocol.sampling else "question"
        if self.progress is not None:  # one bar over several runs (pr-eval probe): this run adds its share
            progress = self.progress
            progress.total = (progress.total or 0) + len(todo)
            progress.refresh()
        else:
            progress = tqdm(total=len(todo), desc=f"{unit}s", unit=unit)

        def finished(traj: Trajectory) -> None:
            progress.update(1)
            if self.store is not None:
                self.store.append(traj)
            if self.on_trajectory:
                self.on_trajectory(traj)

        try:
            if todo:
                options = {"schedule": self.schedule} if self.schedule else {}
                for traj in run_samples(engine, todo, self.protocol, batch_size=self.batch_size,
                                        guide=self.guide, on_finish=finished, **options):
                    answers[trajectory_key(traj)] = traj.to_json()
        finally:
            if progress is not self.progress:
                progress.close()
        return [self._answer(sample, answers) for sample in questions]

    def _rollouts(self, sample: Sample) -> list[Sample]:
        """The trajectories to run for one question: itself (greedy protocols), or its K seeded
        rollouts."""
        if self.protocol.sampling is None:
            return [sample]
        return [dataclasses.replace(sample, meta=dict(sample.meta), rollout=r,
                                    seed=rollout_seed(self.seed, sample.task, sample.sample_id, r))
                for r in range(self.protocol.rollouts)]

    def _answer(self, sample: Sample, answers: dict[str, str]) -> str:
        """A request's answer: its trajectory as JSON, or a sampled question's rollouts."""
        doc_id = sample.meta["doc_id"]
        if self.protocol.sampling is None:
            return answers[sample_key(sample.task, doc_id)]
        rollouts = [answers[sample_key(sample.task, doc_id, r)] for r in range(self.protocol.rollouts)]
        return '{"rollouts": [' + ", ".join(rollouts) + "]}"

    def _data_records(self, requests) -> dict:
        """{task: where its data came from (source record, revision) and how many samples were
        asked for}, for the run's record; from the sources `pr_eval.lmms.task` loaded."""
        from .task import loaded_source

        wanted = Counter(request.args[4] for request in requests)
        records = {}
        for request in requests:
            task, split = request.args[4], request.args[5]
            if task in records:
                continue
            docs = self.task_dict[task][split]
            root = docs[0].get("data_root") if len(docs) else None
            source = loaded_source(str(root)) if root else None
            records[task] = {**(source.to_record() if source else {"rows": len(docs)}),
                             "task_rows": len(docs), "samples": wanted[task]}
        return records

    def _sample(self, request) -> Sample:
        context, _gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        doc = self.task_dict[task][split][doc_id]
        return Sample(task=task, sample_id=str(doc.get("qid", f"{task}-{doc_id}")), question=context,
                      answer=doc.get("answer"), load_images=lambda: doc_to_visual(doc),
                      is_video=bool(doc.get("is_video", False)),
                      # a shard's document keeps its index in the unsharded task (pr_eval.data.shards)
                      meta={"doc_id": doc.get("doc_index", doc_id), "category": doc.get("category", ""),
                            "subtask": doc.get("subtask", ""),
                            # target boxes travel with the trajectory, so the report draws them
                            **({"targets": doc["targets"]} if doc.get("targets") else {})})

    def loglikelihood(self, requests):
        raise NotImplementedError("pixel_reasoner only generates; use it with generate_until tasks")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("pixel_reasoner runs its own multi-turn loop inside generate_until")


def _int(value) -> int | None:
    """lmms-eval passes model_args as strings (or already parsed numbers)."""
    return None if value is None or value == "" else int(value)
