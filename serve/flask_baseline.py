"""The custom model server Triton users compare against: Flask, one process, the same runtime in process.

`python -m serve.flask_baseline <model> <port> [catalog]` serves `POST /predict`: a body of
`numpy.savez` arrays keyed by the spec's input names, answered the same way with its outputs. Binary
bodies, not JSON, so the comparison is fair to Flask. The benchmark starts it and measures it with
the same closed loop as Triton.
"""

from __future__ import annotations

import io
import pickle
import sys
from typing import Any

import numpy as np


def specs_for(model: str, source: str) -> tuple[Any, dict]:
    """(the model's spec, its catalog): from a pickle the benchmark wrote (the very specs it measures, overrides
    and all), or composed from conf/ for a catalog name (`cpu`, `gpu`)."""
    if source.endswith(".pickle"):
        with open(source, "rb") as fh:
            spec, catalog = pickle.load(fh)
        return spec, catalog
    from pipelines.cli import compose
    from pipelines.spec import served_specs

    catalog = served_specs(compose("benchmark", ["model=all", f"catalog={source}"]).models)
    return catalog[model], catalog


def app_for(model: str, source: str = "cpu"):
    from flask import Flask, Response, request

    from pipelines import runtimes

    spec, catalog = specs_for(model, source)
    run = runtimes.load(spec, catalog)
    app = Flask(__name__)

    @app.get("/ready")
    def ready() -> str:
        return "ok"

    @app.post("/predict")
    def predict() -> Response:
        with np.load(io.BytesIO(request.get_data()), allow_pickle=True) as arrays:
            outputs = run({name: arrays[name] for name in arrays.files})
        body = io.BytesIO()
        np.savez(body, **outputs)
        return Response(body.getvalue(), mimetype="application/octet-stream")

    return app


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m serve.flask_baseline <model> <port> [catalog | specs.pickle]", file=sys.stderr)
        return 2
    app = app_for(argv[0], *argv[2:])
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    app.run(host="127.0.0.1", port=int(argv[1]), threaded=True)  # Flask's own server: one process, a thread per request
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
