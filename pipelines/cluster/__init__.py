"""Cluster deployment: the deploy job (`job`: its settings typed once, the objects for the target), Kubernetes and
KServe manifests built from the APIs' own typed objects (`manifests`, `kserve_api`).
"""
