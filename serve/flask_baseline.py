"""The custom model server Triton users compare against: Flask, one process, the same runtime in process.

`python -m serve.flask_baseline <model> <port> [catalog]` serves `POST /predict`: a body of
`numpy.savez` arrays keyed by the spec's input names, answered the same way with its outputs. Binary
bodies, not JSON, so the comparison is fair to Flask. The benchmark starts it and measures it with
the same closed loop as Triton.
"""

from __future__ import annotations

import io
import sys

import numpy as np


def app_for(model: str, catalog: str = "cpu"):
    from flask import Flask, Response, request

    from pipelines import runtimes
    from pipelines.cli import compose
    from pipelines.spec import served_specs

    cfg = compose("benchmark", ["model=all", f"catalog={catalog}"])
    specs = served_specs(cfg.models)
    run = runtimes.load(specs[model], specs)
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
        print("usage: python -m serve.flask_baseline <model> <port> [catalog]", file=sys.stderr)
        return 2
    app = app_for(argv[0], *argv[2:])
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    app.run(host="127.0.0.1", port=int(argv[1]), threaded=True)  # Flask's own server: one process, a thread per request
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
