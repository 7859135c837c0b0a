"""The Kubernetes manifests (deploy/base, kustomize) validated offline against the API schemas,
and checked against the service they deploy: probes, GPU, the HPA's metric, the selectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

BASE = Path(__file__).resolve().parents[2] / "deploy" / "base"
KUBERNETES_VERSION = "1.33"


def manifests() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    documents = [yaml.safe_load((BASE / name).read_text()) for name in kustomization["resources"]]
    return {document["kind"]: document for document in documents}


def test_every_manifest_validates_against_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    found = manifests()
    assert set(found) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for document in found.values():
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_deployment_probes_the_health_routes_and_asks_for_a_gpu() -> None:
    deployment = manifests()["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["memory"]
    assert container["ports"][0]["containerPort"] == 8000
    env = {item["name"]: item["value"] for item in container["env"]}
    from xmc_service.settings import Settings

    Settings(**{k.removeprefix("XMC_").lower(): v for k, v in env.items() if k.startswith("XMC_")})


def test_the_selectors_and_the_hpa_metric_match_the_service() -> None:
    found = manifests()
    labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service",):
        assert found[kind]["spec"]["selector"].items() <= labels.items()
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = found["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == found["Deployment"]["metadata"]["name"]
    metric = hpa["metrics"][0]["pods"]["metric"]["name"]
    from xmc_service.metrics import make_metrics

    exported = {family.name for family in make_metrics().registry.collect()}
    assert metric in exported  # the gauge /metrics serves
