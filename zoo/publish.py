"""``zoo publish``: a finished run's student where others can download it by name.

    zoo publish run=RUN_DIR to=DIR [name=ARCH.TAG] [base_url=URL]   a mirror folder (``zoo.mirrors``)
    zoo publish run=RUN_DIR to=hf-hub:org/repo [name=ARCH.TAG]      a Hugging Face repository (``zoo.hfhub``)
    zoo publish best=RUNS_DIR to=DIR                                the leaderboard's best run of each task

The card is named ``<arch>.<task>`` unless ``name=`` says otherwise, and its version is the run id: publishing a
better run of the same task replaces the card, and the index says which run it now is. Every card the zoo
publishes gives the sha256 and size of its weights.

Into a folder: the weights and the record first, then the card, then ``index.json``, each written to a temporary
name and renamed, so the index never names a file that is not there and a failed publish leaves no card pointing
at missing weights. Files get the user's umask (``zoo.atomic``), so another user's web server can serve them.
The card's own URL is ``<base_url>/<card>/<card>.safetensors`` (base_url: DIR's file:// address by default); a
reader that finds the card through the mirror's index fetches the weights from the mirror first, wherever it is
served from.
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zoo.atomic import atomic_write_bytes, atomic_write_text
from zoo.cards import ModelCard, WeightsSpec, load_card
from zoo.errors import ConfigError


@dataclass
class Published:
    name: str
    version: str                     # the run id
    where: str                       # the card's path, or hf-hub:org/repo@<commit>
    replaced: str | None = None      # the version it replaced in the mirror's index


def publish(run_dir: Path, to: str | Path, base_url: str | None = None, name: str | None = None) -> Published:
    """Publish the run folder ``run_dir`` to a folder or to ``hf-hub:org/repo``."""
    from zoo import hfhub

    if hfhub.is_hub_name(str(to)):
        if base_url:
            raise ConfigError("base_url= is for a mirror folder; a Hub repository has its own address")
        return publish_to_hub(run_dir, str(to), name)
    return publish_to_folder(run_dir, Path(to), base_url, name)


def student_card(run_dir: Path, name: str | None) -> tuple[ModelCard, Path]:
    """The card of a finished image-classification run (weights still pending) and the run folder."""
    from zoo.export.classifier import run_card
    from zoo.runs import load_run

    loaded = load_run(Path(run_dir))
    if loaded.datamodule.kind != "image_classification":  # model cards describe image classifiers so far
        raise ConfigError(f"zoo publish handles image classifiers; run '{run_dir}' is a {loaded.datamodule.kind} run",
                          "export it (zoo export) and ship the export folder instead")
    card, _ = run_card(loaded)
    card.name = name or f"{card.arch}.{card.task}"
    if not re.fullmatch(rf"{re.escape(card.arch)}\.[\w.-]+", card.name):  # it names files and URLs too
        raise ConfigError(f"name '{card.name}' must be <arch>.<tag> with the run's arch '{card.arch}'",
                          f"e.g. name={card.arch}.{card.task}")
    return card, loaded.run_dir


def publish_to_folder(run_dir: Path, to: Path, base_url: str | None = None, name: str | None = None) -> Published:
    from zoo import mirrors
    from zoo.weights import sha256_file

    card, run_dir = student_card(run_dir, name)
    version = run_dir.name
    to = Path(to).expanduser().resolve()
    weights = to / card.name / f"{card.name}.safetensors"
    atomic_write_bytes(weights, (run_dir / "student.safetensors").read_bytes())
    atomic_write_bytes(weights.with_name("record.json"), (run_dir / "record.json").read_bytes())
    relative = weights.relative_to(to).as_posix()
    card.weights = WeightsSpec(urls=[f"{(base_url or to.as_uri()).rstrip('/')}/{relative}"],
                               sha256=sha256_file(weights), size=weights.stat().st_size, format="safetensors")
    card_path = to / f"{card.name}.yaml"
    atomic_write_text(card_path, card.to_yaml())
    load_card(card_path)  # what we publish must read back as a valid card
    previous = mirrors.update_index(to, card, relative, version)
    return Published(card.name, version, str(card_path), previous["version"] if previous else None)


def publish_to_hub(run_dir: Path, to: str, name: str | None = None) -> Published:
    """Stage the Hub layout (``zoo.hfhub``) in a temp folder and upload it as one commit."""
    from zoo import hfhub
    from zoo.weights import sha256_file

    repo_id, _ = hfhub.parse(to)
    card, run_dir = student_card(run_dir, name)
    with tempfile.TemporaryDirectory(prefix="zoo-publish-") as tmp:
        stage = Path(tmp)
        weights = stage / hfhub.WEIGHTS_FILE
        weights.write_bytes((run_dir / "student.safetensors").read_bytes())
        (stage / hfhub.RECORD_FILE).write_bytes((run_dir / "record.json").read_bytes())
        card.weights = WeightsSpec(urls=[f"hf://{repo_id}/{hfhub.WEIGHTS_FILE}"], sha256=sha256_file(weights),
                                   size=weights.stat().st_size, format="safetensors")
        (stage / hfhub.CARD_FILE).write_text(card.to_yaml(), encoding="utf-8")
        (stage / hfhub.README_FILE).write_text(hub_readme(card, f"{hfhub.PREFIX}{repo_id}"), encoding="utf-8")
        commit = hfhub.upload(to, stage, f"zoo publish {card.name} (run {run_dir.name})")
    return Published(card.name, run_dir.name, f"{hfhub.PREFIX}{repo_id}@{commit}")


def hub_readme(card: ModelCard, name: str) -> str:
    """The Hub's model card: metadata for its search, then what the student is and how to load it."""
    licence = f"license: {card.license}\n" if card.license else ""
    metrics = "\n".join(f"| {m.name} | {m.value:.4f} | {m.source} |" for m in card.metrics)
    teacher = ", ".join(card.teacher) if isinstance(card.teacher, list) else card.teacher or "none (trained alone)"
    return (f"---\nlibrary_name: distill-zoo\n{licence}tags: [knowledge-distillation, image-classification]\n---\n\n"
            f"# {card.name}\n\nA `{card.arch}` student for the zoo task `{card.task}` ({card.num_classes} classes, "
            f"input {card.input.shape}), teacher: {teacher}. `card.yaml` is its zoo model card, `record.json` the "
            f"run record behind these numbers.\n\n| metric | value | source |\n|---|---|---|\n{metrics}\n\n"
            f"```bash\nzoo download {name}\nzoo export model={name}\n"
            f"python -c \"import zoo; zoo.create_model('{name}', pretrained=True)\"\n```\n")


@dataclass
class BestRun:
    task: str
    run: Path | None                 # None: skipped, ``why`` says why
    metric: str = ""
    value: float | None = None
    why: str = ""


def best_runs(runs_dir: Path) -> list[BestRun]:
    """For each task on the leaderboard, its best student run (headline metric) whose folder is under
    ``runs_dir`` (the records on the leaderboard hold no weights), or why there is none to publish."""
    from zoo.leaderboard import load_records, task_kind

    chosen = []
    for task, records in sorted(load_records().items()):
        kind = task_kind(task, records)
        if kind.name != "image_classification":
            chosen.append(BestRun(task, None, why=f"a {kind.name} task: zoo publish handles image classifiers"))
            continue
        metric = kind.headline_metric
        ranked = sorted((r for r in records if metric in r.metrics), key=lambda r: -r.metrics[metric])
        found = next((r for r in ranked if (Path(runs_dir) / task / r.run_id / "student.safetensors").is_file()),
                     None)
        if found is None:
            chosen.append(BestRun(task, None, metric, why=f"none of its {len(ranked)} runs on the leaderboard is "
                                                          f"under {Path(runs_dir) / task}"))
        else:
            rank = ranked.index(found) + 1
            chosen.append(BestRun(task, Path(runs_dir) / task / found.run_id, metric, found.metrics[metric],
                                  why="" if rank == 1 else f"#{rank} on the leaderboard: the better ones are not here"))
    return chosen

