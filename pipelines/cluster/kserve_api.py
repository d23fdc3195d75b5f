"""KServe's API models (V1beta1InferenceService and what it holds), without the rest of its SDK.

`import kserve` runs the SDK's `__init__`, which imports its model server (FastAPI, uvicorn) and its
gRPC protocol, whose `inference.*` protobuf messages clash with tritonclient's in one process
("duplicate symbol 'inference.ServerLiveRequest'"). The API models are plain generated classes that
need only six, urllib3 and dateutil, so the `kserve` package (installed with --no-deps by `make
setup`) is loaded here without running its `__init__`, and only `kserve.models` and `kserve.api_client`
are imported from it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from typing import Any

from pipelines.core.errors import HostError


def api() -> Any:
    """The `kserve.models` module (and `kserve.api_client` loaded beside it)."""
    if "kserve" not in sys.modules:
        spec = importlib.util.find_spec("kserve")
        if spec is None or not spec.submodule_search_locations:
            raise HostError(
                "target=kserve needs the kserve package: run `make setup` (pip install --no-deps kserve==0.21.0)"
            )
        package = types.ModuleType("kserve")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["kserve"] = package
    import kserve.api_client  # lazy: the KServe client: KServe manifests only
    import kserve.models  # lazy: the KServe client: KServe manifests only
    from kubernetes.client import models as core  # lazy: the Kubernetes client takes ~2 s; manifests only

    for name in dir(core):  # KServe's types hold core ones (V1ObjectMeta, ...), which its deserializer looks up here
        if name.startswith("V") and not hasattr(kserve.models, name):
            setattr(kserve.models, name, getattr(core, name))
    return kserve.models


def unknown_fields(document: Any, type_name: str, where: str = "") -> list[str]:
    """Paths of the fields of `document` that KServe's model `type_name` (and the core types it holds) lacks.

    KServe's generated deserializer cannot read the kubernetes package's newer type names
    (`Dict[str, str]`), so the check walks the models' own `attribute_map` and `openapi_types`.
    """
    models = api()
    inner = re.fullmatch(r"(?:list|List)\[(.+)\]", type_name) or re.fullmatch(
        r"(?:dict\(str, |Dict\[str, )(.+)[)\]]", type_name
    )
    if inner:
        items = document if isinstance(document, list) else list((document or {}).values())
        return [p for i, item in enumerate(items) for p in unknown_fields(item, inner.group(1), f"{where}[{i}]")]
    klass = getattr(models, type_name, None)
    if klass is None or not isinstance(document, dict):
        return []  # a primitive (str, int, object): nothing to walk
    fields = {json_name: python_name for python_name, json_name in klass.attribute_map.items()}
    problems = []
    for key, value in document.items():
        if key not in fields:
            problems.append(f"{where}.{key}".lstrip("."))
        else:
            problems += unknown_fields(value, klass.openapi_types[fields[key]], f"{where}.{key}")
    return problems
