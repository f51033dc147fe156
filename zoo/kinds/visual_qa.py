"""visual_qa: an image and a question in (LLaVA's chat template, ``zoo.data.llava``), a short generated answer out.

Judged by greedy decoding over a whole split (``zoo.metrics.visual_qa``): answer accuracy (the headline), accuracy
on present-object questions, POPE's accuracy / F1 / yes-ratio, the hallucination rate on absent-object questions,
tokens per second and the activated and total parameters; one model at a time (no ensembles of generators); a
split without a file (``data.test: null``) has no metrics. Answers
are generated, so teacher outputs are not cached; a teacher is trained alone with ``vlm_ce``. ``zoo export`` writes
the vision graph and the decoder graph with the tokenizer, checked answer for answer against PyTorch
(``zoo.export.vlm``); ``zoo infer`` answers the questions of a LLaVA JSON file with them.

Preference pairs (``visual_preference``) only feed stages of a staged run (``zoo.kinds.STAGE_ONLY_KINDS``).
"""

from zoo.errors import ConfigError
from zoo.kinds import KINDS, Kind
from zoo.metrics.visual_qa import evaluate_vqa


def evaluate(datamodule, models, split: str, device: str = "cpu", role: str = "student",
             limit_batches: int | None = None, **context):
    if split not in datamodule.splits:  # no file for it (data.val / data.test null): nothing to measure
        return {}
    if len(models) != 1:
        raise ConfigError(f"visual_qa evaluates one model at a time, got {len(models)}",
                          "give the task one teacher arch")
    return evaluate_vqa(models[0], datamodule.prompt_loader(split, limit_batches), datamodule.tokenizer,
                        datamodule.max_new_tokens, device=device, prefix=split)


def export(loaded_run, out, profile: str | None, say):
    from zoo.export.vlm import export_vlm_run

    return export_vlm_run(loaded_run, out, profile, say)


KINDS.register("visual_qa")(Kind(
    name="visual_qa", headline="acc", evaluate=evaluate, teacher_cache=False, alone_method="vlm_ce", export=export,
    export_profile="default"))
