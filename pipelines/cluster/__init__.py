"""Cluster deployment: Kubernetes and KServe manifests built from the APIs' own typed objects (`manifests`,
`kserve_api`).
"""
