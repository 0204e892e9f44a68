"""deploy/: the compose file parses and describes the documented topology with commands and settings that
exist; the Dockerfile copies every package; the Kubernetes manifests validate against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict), and what no schema covers (KEDA's CRD, kustomize) is
checked structurally and reported as skipped with the reason."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30.0"
NOT_IN_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "a KEDA custom resource: kubernetes-validate only has the built-in API schemas",
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): "a kustomize build file, not an API object",
}


def cli_commands() -> set[str]:
    from accord.cli.main import app

    names = set()
    for command in app.registered_commands:
        names.add(command.name or command.callback.__name__.replace("_cmd", "").replace("_", "-"))  # type: ignore[union-attr]
    for group in app.registered_groups:
        if group.name:
            names.add(group.name)
    return names


def known_env_names() -> set[str]:
    from accord.api.http.config import ApiSettings
    from accord.models.settings import Settings
    from accord.worker.celery_app import DistributedSettings

    names = {f"ACCORD_{f.upper()}" for f in Settings.model_fields}
    names |= {f"ACCORD_{f.upper()}" for f in DistributedSettings.model_fields}
    names |= {f"ACCORD_API_{f.upper()}" for f in ApiSettings.model_fields}
    return names


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def check_accord_args(args: list[str], where: str) -> None:
    from accord.cli.distributed import resolve_queues

    assert args and args[0] in cli_commands(), f"{where}: {args[:1]} is not an accord command"
    if args[0] == "worker" and "--queues" in args:
        resolve_queues(args[args.index("--queues") + 1])      # raises on an unknown queue


def dockerfile_stages() -> dict[str, set[str]]:
    """Each stage of deploy/Dockerfile -> the accord extras it installs (``accord[a,b] @ file://...``)."""
    stages: dict[str, set[str]] = {}
    current = ""
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^FROM \S+ AS ([\w-]+)$", line)
        if match:
            current = match.group(1)
            stages[current] = set()
        for extras in re.findall(r"accord\[([\w,]+)\] @", line):
            stages[current] |= set(extras.split(","))
    return stages


def extras_needed(args: list[str]) -> set[str]:
    """The extras an accord command needs in its image (the role's libraries, see accord/extras.py)."""
    if args[0] == "serve":
        return {"api", "report"} | ({"distributed"} if "distributed" in args else set())
    if args[0] == "worker":
        queues = args[args.index("--queues") + 1].split(",") if "--queues" in args else []
        return {"distributed"} | {q for q in queues if q in ("openai", "anthropic", "local")}
    if args[0] == "scheduler":
        return {"distributed", "openai", "anthropic"}          # it drives the vendors' batch APIs
    return set()


def check_image_role(image: str, target: str, args: list[str], where: str) -> None:
    stages = dockerfile_stages()
    assert target in stages, f"{where}: the Dockerfile has no stage {target!r}"
    assert image == f"accord-{target}:latest", f"{where}: image {image} is not the {target} target's"
    missing = extras_needed(args) - stages[target]
    assert not missing, f"{where}: the {target} image lacks the extras {sorted(missing)} that {args[0]!r} needs"


# ------------------------------------------------------------------------------------------ compose
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_has_the_documented_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker-openai", "worker-anthropic", "worker-local", "scheduler", "flower", "redis",
                 "postgres", "migrate"):
        assert name in services, f"compose: no service {name!r}"
    assert services["redis"]["command"][1:5] == ["--save", "", "--appendonly", "no"]   # nothing on disk


def test_compose_accord_services_run_real_commands_with_real_settings(compose: dict[str, Any]) -> None:
    known = known_env_names()
    accord_services = {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("accord")}
    assert set(accord_services) == {"migrate", "api", "worker-openai", "worker-anthropic", "worker-local", "scheduler"}
    for name, service in accord_services.items():
        check_accord_args(service["command"], f"compose service {name}")
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        check_image_role(service["image"], service["build"]["target"], service["command"], f"compose service {name}")
        for key in service["environment"]:
            if key.startswith("ACCORD_"):
                assert key in known, f"compose service {name}: {key} is not a setting"
        url = service["environment"]["ACCORD_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    queues = {n: s["command"][s["command"].index("--queues") + 1] for n, s in accord_services.items()
              if s["command"][0] == "worker"}
    assert queues == {"worker-openai": "openai,control", "worker-anthropic": "anthropic", "worker-local": "local"}


def test_dockerfile_copies_every_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, flags=re.MULTILINE))
    package_dirs = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= copied, f"Dockerfile misses {sorted(package_dirs - copied)}"
    for name in copied:
        assert (REPO / name).is_dir()
    assert 'ENTRYPOINT ["accord"]' in text
    assert re.search(r"^USER 10001$", text, flags=re.MULTILINE)


def test_dockerfile_has_a_slim_image_per_role() -> None:
    """API (no llama.cpp, no vendor SDK), workers of the vendor APIs, workers of the local model; only the
    local workers' stage uses the llama.cpp build; each final stage runs as uid 10001."""
    stages = dockerfile_stages()
    assert stages["api"] == {"api", "report", "distributed"}
    assert stages["worker-cloud"] == {"openai", "anthropic", "distributed"}
    assert stages["worker-local"] == {"local", "distributed"}
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    blocks = re.split(r"^(?=FROM )", text, flags=re.MULTILINE)
    by_stage = {re.match(r"FROM \S+ AS ([\w-]+)", b).group(1): b for b in blocks if b.startswith("FROM")}  # type: ignore[union-attr]  # every FROM names its stage
    for role in ("api", "worker-cloud", "worker-local"):
        assert "USER 10001" in by_stage[role], f"Dockerfile: stage {role} runs as root"
        assert ("build-llama" in by_stage[role]) == (role == "worker-local"), f"Dockerfile: stage {role} and llama.cpp"
    assert "build-essential" not in by_stage["runtime"] and "build-essential" not in by_stage["build"]
    assert list(by_stage)[-1] == "api"                            # a build without --target gives the API


# ------------------------------------------------------------------------------------------ kubernetes
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
K8S_DOCS = [(path.name, i, doc) for path in K8S_FILES for i, doc in enumerate(load_docs(path))]


def test_manifests_are_there() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, _, doc in K8S_DOCS if "metadata" in doc}
    for expected in [("Deployment", "accord-api"), ("Service", "accord-api"), ("Deployment", "accord-scheduler"),
                     ("Deployment", "accord-worker-openai"), ("ConfigMap", "accord-config"),
                     ("Secret", "accord-secrets"), ("ScaledObject", "accord-worker-openai")]:
        assert expected in kinds, f"deploy/k8s: no {expected[0]} {expected[1]}"


@pytest.mark.parametrize(("name", "index", "doc"), K8S_DOCS, ids=[f"{n}#{i}-{d['kind']}" for n, i, d in K8S_DOCS])
def test_manifest_validates(name: str, index: int, doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    key = (doc["apiVersion"], doc["kind"])
    if key in NOT_IN_SCHEMAS:
        check_structure(doc)
        pytest.skip(f"{name}: {doc['kind']} is {NOT_IN_SCHEMAS[key]}; checked structurally instead")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    check_structure(doc)


def check_structure(doc: dict[str, Any]) -> None:
    """What the schemas cannot know: references between the manifests and to accord itself."""
    by_kind = {(d["kind"], d["metadata"]["name"]) for _, _, d in K8S_DOCS if "metadata" in d}
    kind = doc["kind"]
    if kind in ("Deployment", "Job"):
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            if container["image"].startswith("accord"):
                check_accord_args(container["args"], f"{kind} {doc['metadata']['name']}")
                target = container["image"].removeprefix("accord-").removesuffix(":latest")
                check_image_role(container["image"], target, container["args"], f"{kind} {doc['metadata']['name']}")
                refs = container.get("envFrom", [])
                assert {"configMapRef": {"name": "accord-config"}} in refs
                assert {"secretRef": {"name": "accord-secrets"}} in refs
        if kind == "Deployment" and doc["metadata"]["name"] == "accord-scheduler":
            assert doc["spec"]["replicas"] == 1 and doc["spec"]["strategy"]["type"] == "Recreate"
    elif kind == "ConfigMap":
        known = known_env_names()
        for key in doc["data"]:
            assert key in known, f"ConfigMap: {key} is not a setting"
    elif kind == "ScaledObject":
        target = doc["spec"]["scaleTargetRef"]["name"]
        assert ("Deployment", target) in by_kind
        worker = next(d for _, _, d in K8S_DOCS if d["kind"] == "Deployment" and d["metadata"]["name"] == target)
        args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
        served = args[args.index("--queues") + 1].split(",")
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            queue = trigger["metadata"]["listName"]
            assert queue.startswith("accord.") and queue.split(".", 1)[1] in served, \
                f"ScaledObject {target}: scales on {queue}, which the worker does not serve"
    elif kind == "Kustomization":
        for resource in doc["resources"]:
            assert (DEPLOY / "k8s" / resource).is_file(), f"kustomization: {resource} missing"
        assert {f.name for f in K8S_FILES} - {"kustomization.yaml"} == set(doc["resources"])
