"""`python -m serve.client model=<name> image=<file>`: classify an image through Triton and print the top-k.

Works with any served classifier: the ensemble takes the encoded image as it is (Triton does the
pre-processing); a plain classifier gets it pre-processed here with the same code
(pipelines/data/images.py) and its labels from Triton's classification extension
(pipelines/serving/classify.py). `show=metadata` or
`show=config` prints what Triton reports about the model instead. `image=sample:<file>` picks one
of scikit-image's sample photographs (sample:chelsea.png, sample:coffee.png, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.config.preprocessing import image_limits
from pipelines.config.spec import model_spec
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ConfigError, checked_choice
from pipelines.serving.classify import classify_ensemble, classify_tensor, read_image
from pipelines.serving.launcher import serve
from pipelines.serving.served_model import ServedModel
from pipelines.serving.settings import ServerSettings

PROTOCOLS = ("http", "grpc")
SHOW = ("metadata", "config")


def run(cfg: Any) -> list[tuple[str, float]] | str:
    if cfg.model.name == "all":
        raise ConfigError("choose one model to classify with, e.g. model=resnet50_ensemble")
    checked_choice(cfg.protocol, PROTOCOLS, "protocol")
    if cfg.show is not None:
        checked_choice(cfg.show, SHOW, "show")
    spec = model_spec(str(cfg.model.name), cfg.model)
    if cfg.show is None:
        if not cfg.image:
            raise ConfigError("image=<file> is required (or image=sample:chelsea.png, or show=metadata|config)")
        path, data = read_image(str(cfg.image), image_limits(cfg.image_limits))
    k = cfg.top_k
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"top_k must be a whole number >= 1, got {k!r}")
    repository = cfg.paths.model_repository_gpu if spec.format == "tensorrt" else cfg.model_repository
    server = ServerSettings.from_cfg(cfg.server)
    with serve(server, repository, cfg.triton_releases) as endpoints, ServedModel(spec, endpoints) as model:
        model.check_ready()
        if cfg.show is not None:
            text = json.dumps(model.metadata(), indent=2) if cfg.show == "metadata" else model.config_text()
            print(text)
            return text
        if spec.format == "ensemble":
            rows = classify_ensemble(model, spec, data, str(cfg.protocol))[:k]
        else:
            rows = classify_tensor(model, spec, data, str(cfg.protocol), k)
    print(f"{Path(path).name} -> {spec.name} over {cfg.protocol} (Triton at {endpoints.http})")
    print(f"{'rank':>4}  {'probability':>11}  label")
    for rank, (label, probability) in enumerate(rows, 1):
        print(f"{rank:>4}  {probability:>11.4f}  {label}")
    return rows


main = hydra_main("client", run, __doc__)

if __name__ == "__main__":
    main()
