"""`python -m serve.deploy target=kubernetes|kserve`: manifests that serve the catalog's repository on a cluster.

Writes `deploy/<target>.yaml` (every object, for `kubectl apply -f`) from the Kubernetes and KServe
API's own typed objects. Before writing, each core object is validated against the Kubernetes
schemas (kubernetes-validate, strict), and every field of an InferenceService must be one that
KServe's own API models know. The server flags are the ones every launch here uses; on Kubernetes an
nginx container in each pod is Triton's front, configured as `serve.triton` configures it locally;
in the GPU profile the repository's TensorRT plans are checked against the pinned image first.
Exit 0, or 2 with one line for a setting or repository that cannot be deployed.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipelines.cluster.job import DeployJob, documents
from pipelines.core.atomic import write_text
from pipelines.core.cli import hydra_main


def run(cfg: DictConfig) -> Path:
    job = DeployJob.from_cfg(cfg)
    docs = documents(job)
    import yaml

    write_text(job.out, yaml.safe_dump_all(docs, sort_keys=False))
    checked = (
        "its fields checked against KServe's API models"
        if job.target == "kserve"
        else f"validated against Kubernetes {job.kubernetes_version}"
    )
    print(
        f"wrote {job.out}: {', '.join(d['kind'] + ' ' + d['metadata']['name'] for d in docs)} "
        f"({len(job.models)} models; {checked})",
        flush=True,
    )
    where = job.settings.repository_uri or f"the claim {job.settings.repository_claim}"
    print(f"next: push {job.repository}/ to {where}, then `kubectl apply -f {job.out}`", flush=True)
    return job.out


main = hydra_main("deploy", run, __doc__)

if __name__ == "__main__":
    main()
