"""The custom model server Triton users compare against: Flask, one process, the same runtime in process.

`python -m serve.flask_baseline <model> <port> [catalog | models.yaml]` serves `POST /predict`: a
body of named numpy arrays (`pipelines.performance.flask_wire`: an `.npz`, never pickled) keyed by the spec's
input names, answered the same way with its outputs; a body that is not one is answered 400. Binary
bodies, not JSON, so the comparison is fair to Flask. The benchmark starts it with the models'
resolved config (the very specs it measures, overrides and all) and measures it with the same
closed loop as Triton.
"""

from __future__ import annotations

import sys
from typing import Any


def specs_for(model: str, source: str) -> tuple[Any, dict]:
    """(the model's spec, its catalog): from a models config in YAML (what the benchmark writes), or composed
    from conf/ for a catalog name (`cpu`, `gpu`). Never a pickle: loading one runs the code it names."""
    from pipelines.config.spec import served_specs

    if source.endswith((".yaml", ".yml")):
        from omegaconf import OmegaConf

        catalog = served_specs(OmegaConf.load(source))
    else:
        from pipelines.core.cli import compose

        catalog = served_specs(compose("benchmark", ["model=all", f"catalog={source}"]).models)
    return catalog[model], catalog


def app_for(model: str, source: str = "cpu"):
    from flask import Flask, Response, request

    from pipelines.performance import flask_wire
    from pipelines.runners import runtimes

    spec, catalog = specs_for(model, source)
    run = runtimes.served_runner(spec, catalog)
    app = Flask(__name__)

    @app.get("/ready")
    def ready() -> str:
        return "ok"

    @app.post("/predict")
    def predict() -> Response:
        try:
            arrays = flask_wire.loads(request.get_data())
        except flask_wire.WireError as exc:
            return Response(f"{exc}\n", status=400, mimetype="text/plain")
        missing = [t.name for t in spec.inputs if t.name not in arrays]
        if missing:
            return Response(f"missing inputs: {missing}\n", status=400, mimetype="text/plain")
        outputs = run({t.name: arrays[t.name] for t in spec.inputs})
        return Response(flask_wire.dumps(outputs), mimetype="application/octet-stream")

    return app


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m serve.flask_baseline <model> <port> [catalog | models.yaml]", file=sys.stderr)
        return 2
    app = app_for(argv[0], *argv[2:])
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    app.run(host="127.0.0.1", port=int(argv[1]), threaded=True)  # Flask's own server: one process, a thread per request
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
