"""``zoo publish run=RUN_DIR to=DIR``: a finished run as a download mirror that ``zoo download`` reads.

Layout written under DIR (serve DIR over https, or use it as is through file://):

    DIR/<card>.yaml                      the model card: sha256 and size of the weights, metrics citing the record
    DIR/<card>/<card>.safetensors        the student alone
    DIR/<card>/record.json               the run record behind the card's metrics

The card's URL is ``<base_url>/<card>/<card>.safetensors``, base_url defaulting to
DIR's file:// address; copy the card into models/ to make it a zoo model.
Files are written to temporary names and renamed, so a failed publish leaves no
card pointing at missing weights.
"""

import shutil
from pathlib import Path

from zoo.atomic import atomic_write_text
from zoo.cards import WeightsSpec, load_card
from zoo.errors import ConfigError


def publish(run_dir: Path, to: Path, base_url: str | None = None) -> Path:
    """Publish the run folder ``run_dir`` under ``to``; returns the card's path."""
    from zoo.export.classifier import run_card
    from zoo.runs import load_run
    from zoo.weights import sha256_file

    loaded = load_run(Path(run_dir))
    if loaded.datamodule.kind != "image_classification":  # model cards describe image classifiers so far
        raise ConfigError(f"zoo publish handles image classifiers; run '{run_dir}' is a {loaded.datamodule.kind} run",
                          "export it (zoo export) and ship the export folder instead")
    card, _ = run_card(loaded)
    to = Path(to).expanduser().resolve()
    folder = to / card.name
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{card.name}.safetensors"
    tmp = weights.with_name(f".{weights.name}.tmp")
    shutil.copyfile(loaded.run_dir / "student.safetensors", tmp)
    tmp.replace(weights)
    shutil.copyfile(loaded.run_dir / "record.json", folder / "record.json")
    base = (base_url or to.as_uri()).rstrip("/")
    card.weights = WeightsSpec(urls=[f"{base}/{card.name}/{weights.name}"], sha256=sha256_file(weights),
                               size=weights.stat().st_size, format="safetensors")
    card_path = to / f"{card.name}.yaml"
    atomic_write_text(card_path, card.to_yaml())
    load_card(card_path)  # what we publish must read back as a valid card
    return card_path
