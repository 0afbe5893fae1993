"""deploy/k8s/: every manifest passes the Kubernetes OpenAPI schema (strict: unknown fields are errors) of the oldest
supported and the newest known release, the fields each kind needs are there, every reference resolves (volumes,
claims, Secrets and their keys, ConfigMaps, Services, ports, kustomize resources and images), pods meet the
"restricted" Pod Security Standard, and the workloads agree with each other on addresses and paths."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest

MIN_KUBERNETES = "1.31"  # podFailurePolicy GA; the runbook states the same
NAMESPACED = {"ConfigMap", "Secret", "PersistentVolumeClaim", "Deployment", "Service", "Job", "CronJob",
              "NetworkPolicy"}  # fmt: skip
OUR_IMAGE = re.compile(r"^clinfuse/([\w.-]+):([\w.-]+)$")
HEALTH = "/_stcore/health"
SCORING_HEALTH = "/ping"  # MLflow's scoring server: 200 once the model is loaded


def _kubernetes_versions() -> list[str]:
    import kubernetes_validate

    return [MIN_KUBERNETES, kubernetes_validate.latest_version()]


@pytest.fixture(scope="module")
def manifests(deploy) -> list:
    return deploy.k8s_manifests()


def _find(manifests, kind: str, name: str) -> dict:
    found = [m.doc for m in manifests if m.kind == kind and m.name == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} manifests"
    return found[0]


def _pod_spec(deploy, doc: dict) -> dict:
    return deploy.pod_template(doc)["spec"]


def _container(deploy, doc: dict, name: str) -> dict:
    return next(c for _, c in deploy.containers(_pod_spec(deploy, doc)) if c["name"] == name)


def _argv(container: dict) -> list[str]:
    return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]


def _option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def _mounts(deploy, doc: dict, container: dict) -> dict[str, tuple[str, str, bool]]:
    """mountPath -> (volume type, claim/secret/configMap name, read-only)."""
    volumes = {v["name"]: v for v in _pod_spec(deploy, doc).get("volumes") or []}
    result = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if "persistentVolumeClaim" in volume:
            source = ("pvc", volume["persistentVolumeClaim"]["claimName"])
        elif "secret" in volume:
            source = ("secret", volume["secret"]["secretName"])
        elif "configMap" in volume:
            source = ("configMap", volume["configMap"]["name"])
        else:
            source = (next(k for k in volume if k != "name"), "")
        result[mount["mountPath"]] = (*source, bool(mount.get("readOnly")))
    return result


def _kustomization(deploy) -> dict:
    return deploy.load_yaml_documents(deploy.K8S / "kustomization.yaml")[0]


def _config(manifests) -> dict[str, str]:
    return _find(manifests, "ConfigMap", "clinfuse-config")["data"]


# ---------------------------------------------------------------------------------------------------------------
# each manifest on its own


@pytest.mark.parametrize("version", _kubernetes_versions())
def test_manifest_matches_the_kubernetes_schema(manifest, version: str) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest.doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise AssertionError(f"{manifest.id} against Kubernetes {version}: {path}: {exc.message}") from None


def test_manifest_has_the_fields_its_kind_needs(manifest, deploy) -> None:
    doc, kind = manifest.doc, manifest.kind
    assert doc.get("apiVersion") and kind != "?", manifest.id
    metadata = doc.get("metadata") or {}
    if kind == "Job":
        assert metadata.get("generateName", "").endswith("-"), "a one-off Job is named by generateName"
    else:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", metadata.get("name", "")), f"{manifest.id}: name"
    if kind in NAMESPACED:
        assert metadata.get("namespace") == deploy.NAMESPACE, f"{manifest.id} must name namespace clinfuse"
    else:
        assert kind == "Namespace", f"{manifest.id}: unexpected kind"
    assert (metadata.get("labels") or {}).get("app.kubernetes.io/part-of") == "clinfuse", manifest.id
    spec = doc.get("spec") or {}
    if kind == "Deployment":
        selector = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"]["labels"]
        assert selector and selector.items() <= labels.items(), f"{manifest.id}: selector does not match its pods"
    if kind in ("Job", "CronJob"):
        template = deploy.pod_template(doc)
        assert template["spec"].get("restartPolicy") == "Never", "podFailurePolicy needs restartPolicy Never"
        job = spec if kind == "Job" else spec["jobTemplate"]["spec"]
        for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "podFailurePolicy"):
            assert key in job, f"{manifest.id}: {key}"
    if kind == "CronJob":
        assert spec["concurrencyPolicy"] == "Forbid", "two scoring runs would write the same files"
        assert spec.get("timeZone") and spec.get("startingDeadlineSeconds")
    if kind == "Service":
        assert spec.get("selector") and spec.get("ports")
        assert spec.get("type", "ClusterIP") == "ClusterIP", "expose through an Ingress, not a node port"
    if kind == "PersistentVolumeClaim":
        assert spec["accessModes"] and spec["resources"]["requests"]["storage"]
    if kind == "Secret":
        assert manifest.path.name == "secrets.example.yaml", "real Secrets are created by hand, never committed"


def test_workload_meets_the_restricted_pod_security_standard(workload, deploy) -> None:
    spec = _pod_spec(deploy, workload.doc)
    pod = spec.get("securityContext") or {}
    assert pod.get("runAsNonRoot") is True, workload.id
    assert pod.get("runAsUser", 0) > 0 and pod.get("runAsGroup", 0) > 0 and pod.get("fsGroup", 0) > 0, workload.id
    assert (pod.get("seccompProfile") or {}).get("type") == "RuntimeDefault", workload.id
    assert spec.get("automountServiceAccountToken") is False, f"{workload.id}: no pod talks to the API server"
    assert spec.get("enableServiceLinks") is False, f"{workload.id}: Service env vars (e.g. *_PORT) leak in"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), f"{workload.id}: {key}"
    assert not [v for v in spec.get("volumes") or [] if "hostPath" in v], f"{workload.id}: hostPath volume"
    for group, container in deploy.containers(spec):
        context = container.get("securityContext") or {}
        where = f"{workload.id} {group} {container['name']}"
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("readOnlyRootFilesystem") is True, where
        assert (context.get("capabilities") or {}).get("drop") == ["ALL"], where
        assert not context.get("privileged") and not (context.get("capabilities") or {}).get("add"), where
        if context.get("readOnlyRootFilesystem") and group == "containers":
            mounts = {m["mountPath"] for m in container.get("volumeMounts") or []}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_workload_images_user_and_resources(workload, deploy) -> None:
    spec = _pod_spec(deploy, workload.doc)
    version = deploy.pyproject()["project"]["version"]
    for group, container in deploy.containers(spec):
        where = f"{workload.id} {group} {container['name']}"
        image = container["image"]
        ours = OUR_IMAGE.match(image)
        if ours:
            assert (deploy.DEPLOY / f"{ours.group(1)}.Dockerfile").is_file(), f"{where}: {image} is built nowhere"
            assert ours.group(2) == version, f"{where}: {image} is not the project version {version}"
            assert "command" not in container, f"{where}: `command` would replace the image's tini entrypoint"
            dockerfile = deploy.parse_dockerfile(deploy.DEPLOY / f"{ours.group(1)}.Dockerfile")
            uid, gid = dockerfile.in_stage(dockerfile.final_stage, "USER")[-1].value.split(":")
            context = spec["securityContext"]
            assert (str(context["runAsUser"]), str(context["runAsGroup"])) == (uid, gid), f"{where}: image user"
        else:
            assert re.fullmatch(r"[\w.-]+\.[a-z]+/[\w./-]+:v?\d+\.\d+\.\d+", image), f"{where}: {image} not pinned"
        assert container.get("imagePullPolicy") == "IfNotPresent", where
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        assert requests.get("cpu") and requests.get("memory") and limits.get("memory"), f"{where}: resources"


def test_workload_references_resolve(workload, deploy, manifests) -> None:
    spec = _pod_spec(deploy, workload.doc)
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    secrets = {m.name: m.doc for m in manifests if m.kind == "Secret"}
    config_maps = {m.name for m in manifests if m.kind == "ConfigMap"}
    config_maps |= {g["name"] for g in _kustomization(deploy).get("configMapGenerator") or []}
    claims = {m.name for m in manifests if m.kind == "PersistentVolumeClaim"}
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims, f"{workload.id}: {volume}"
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secrets, f"{workload.id}: no Secret for {volume}"
        if "configMap" in volume:
            assert volume["configMap"]["name"] in config_maps, f"{workload.id}: no ConfigMap for {volume}"
    used = set()
    for group, container in deploy.containers(spec):
        for mount in container.get("volumeMounts") or []:
            assert mount["name"] in volumes, f"{workload.id} {container['name']}: no volume {mount['name']}"
            used.add(mount["name"])
        for source in container.get("envFrom") or []:
            assert source["configMapRef"]["name"] in config_maps, f"{workload.id}: {source}"
        ports = {p["name"] for p in container.get("ports") or []}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            action = (container.get(probe) or {}).get("httpGet") or (container.get(probe) or {}).get("tcpSocket")
            if action:
                assert action["port"] in ports, f"{workload.id} {container['name']} {probe}: port {action['port']}"
        assert (
            group == "initContainers"
            or container.get("readinessProbe")
            or container.get("livenessProbe")
            or (workload.kind in ("Job", "CronJob"))
        ), f"{workload.id} {container['name']}: a long-running container needs a probe"
    assert used == set(volumes), f"{workload.id}: unused volumes {set(volumes) - used}"


def test_secret_mounts_name_existing_keys(workload, deploy, manifests) -> None:
    secrets = {m.name: m.doc for m in manifests if m.kind == "Secret"}
    config = _config(manifests)
    spec = _pod_spec(deploy, workload.doc)
    for _, container in deploy.containers(spec):
        mounts = _mounts(deploy, workload.doc, container)
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        if container.get("envFrom"):
            env = {**config, **env}
        for name, value in env.items():
            if not name.endswith(("_FILE", "_USERS")) or not value:
                continue
            path = PurePosixPath(value)
            kind, source, _ = mounts.get(str(path.parent), ("", "", False))
            if kind == "secret":
                assert path.name in secrets[source]["stringData"], f"{workload.id}: Secret {source} has no {path.name}"
            else:
                assert kind == "pvc", f"{workload.id} {container['name']}: {name}={value} is on no mounted volume"


# ---------------------------------------------------------------------------------------------------------------
# the workloads together


def test_services_select_a_workload_and_its_ports(manifests, deploy) -> None:
    workloads = [m for m in manifests if m.kind == "Deployment"]
    for service in (m for m in manifests if m.kind == "Service"):
        selector = service.doc["spec"]["selector"]
        matching = [w for w in workloads if selector.items() <= w.doc["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matching) == 1, f"Service {service.name} selects {len(matching)} Deployments"
        ports = {p["name"]: p["containerPort"] for _, c in deploy.containers(_pod_spec(deploy, matching[0].doc))
                 for p in c.get("ports") or []}  # fmt: skip
        for port in service.doc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {service.name}: no container port {port['targetPort']}"
            assert port["port"] == ports[port["targetPort"]], f"Service {service.name}: keep the port numbers equal"


def test_network_policies_select_existing_pods(manifests, deploy) -> None:
    labels = [deploy.pod_template(m.doc)["metadata"]["labels"] for m in manifests if deploy.pod_template(m.doc)]
    policies = [m for m in manifests if m.kind == "NetworkPolicy"]
    assert any(p.doc["spec"]["podSelector"] == {} and not p.doc["spec"].get("ingress") for p in policies), (
        "no default-deny ingress policy"
    )
    for policy in policies:
        selector = policy.doc["spec"]["podSelector"]
        if not selector:
            continue
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []

        def selects(pod: dict, match_labels=match_labels, expressions=expressions) -> bool:
            return match_labels.items() <= pod.items() and all(pod.get(e["key"]) in e["values"] for e in expressions)

        assert any(selects(pod) for pod in labels), f"NetworkPolicy {policy.name} selects no pod"


def test_namespace_enforces_the_restricted_standard(manifests) -> None:
    labels = _find(manifests, "Namespace", "clinfuse")["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"


def test_training_job_requests_one_gpu(manifests, deploy) -> None:
    job = next(m.doc for m in manifests if m.kind == "Job")
    train = _container(deploy, job, "train")
    assert train["resources"]["limits"].get("nvidia.com/gpu") == 1
    assert train["resources"]["requests"].get("nvidia.com/gpu") == 1
    spec = _pod_spec(deploy, job)
    assert any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations") or []), "GPU nodes are tainted"
    shm = _mounts(deploy, job, train).get("/dev/shm")
    assert shm and shm[0] == "emptyDir", "DataLoader workers need a larger /dev/shm"
    assert next(v for v in spec["volumes"] if v["name"] == "dshm")["emptyDir"]["medium"] == "Memory"
    script = _argv(train)
    assert "--accelerator gpu" in script[-1]
    ingest = _argv(_container(deploy, job, "ingest"))
    assert _option(ingest, "--out") in script[-1], "train must read the cache the init container writes"


def test_scoring_runs_on_the_dask_scheduler(manifests, deploy) -> None:
    cronjob = _find(manifests, "CronJob", "clinfuse-score")
    score = _argv(_container(deploy, cronjob, "score"))
    scheduler = _find(manifests, "Deployment", "clinfuse-dask-scheduler")
    port = _option(_argv(_container(deploy, scheduler, "scheduler")), "--port")
    service = _find(manifests, "Service", "clinfuse-dask-scheduler")
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    assert _option(_argv(_container(deploy, scheduler, "scheduler")), "--protocol") == "tls"
    address = f"tls://{service['metadata']['name']}:{port}"
    assert _option(score, "--scheduler") == address
    worker = _argv(_container(deploy, _find(manifests, "Deployment", "clinfuse-dask-worker"), "worker"))
    assert worker[:3] == ["dask", "worker", address]


def test_workers_see_the_scoring_files_at_the_same_paths(manifests, deploy) -> None:
    cronjob = _find(manifests, "CronJob", "clinfuse-score")
    workers = _find(manifests, "Deployment", "clinfuse-dask-worker")
    score_mounts = _mounts(deploy, cronjob, _container(deploy, cronjob, "score"))
    worker_mounts = _mounts(deploy, workers, _container(deploy, workers, "worker"))
    claims = {p: m for p, m in score_mounts.items() if m[0] == "pvc"}
    assert claims, "scoring mounts no persistent volume"
    for path, mount in claims.items():
        assert worker_mounts.get(path) == mount, f"{path}: workers must mount {mount} there too"
    storage = {m.name: m.doc for m in manifests if m.kind == "PersistentVolumeClaim"}
    for _, claim, _ in claims.values():
        assert "ReadWriteMany" in storage[claim]["spec"]["accessModes"], f"{claim} is shared across nodes"
    config = _config(manifests)
    assert config["CLINFUSE_HOME"] in claims, "downloaded bundles must be on the shared volume"


def test_dashboard_serves_scores_and_probes_streamlit(manifests, deploy) -> None:
    deployment = _find(manifests, "Deployment", "clinfuse-dashboard")
    container = _container(deploy, deployment, "dashboard")
    argv = _argv(container)
    assert argv[:2] == ["clinfuse", "dashboard"] and _option(argv, "--host") == "0.0.0.0"
    cronjob = _find(manifests, "CronJob", "clinfuse-score")
    assert _option(argv, "--scores") == _option(_argv(_container(deploy, cronjob, "score")), "--out")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[probe]["httpGet"]
        assert action["path"] == HEALTH and ports[action["port"]] == int(_option(argv, "--port")), probe
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate", (
        "one writer of the audit log"
    )
    # the scores name the model bundle (under CLINFUSE_HOME) and the scoring cache (under /data) by absolute path
    mounts = _mounts(deploy, deployment, container)
    score_mounts = _mounts(deploy, cronjob, _container(deploy, cronjob, "score"))
    for path, (kind, claim, _) in score_mounts.items():
        if kind == "pvc":
            assert mounts.get(path, ())[:2] == (kind, claim), f"the dashboard cannot open the scores' {path}"
            assert mounts[path][2], f"the dashboard needs {path} read-only"


def test_online_scoring_serves_what_batch_scoring_scores(manifests, deploy) -> None:
    deployment = _find(manifests, "Deployment", "clinfuse-serving")
    container = _container(deploy, deployment, "serving")
    argv = _argv(container)
    cronjob = _find(manifests, "CronJob", "clinfuse-score")
    score = _container(deploy, cronjob, "score")
    assert argv[:3] == ["mlflow", "models", "serve"]
    assert _option(argv, "--model-uri") == _option(_argv(score), "--model"), "online and batch score one model"
    assert _option(argv, "--env-manager") == "local", "the image's own Python: nothing is installed at start"
    assert _option(argv, "--host") == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[probe]["httpGet"]
        assert action["path"] == SCORING_HEALTH and ports[action["port"]] == int(_option(argv, "--port")), probe
    # the settings and the key of batch scoring, so the pseudonyms in an answer are batch scoring's
    assert container["envFrom"] == score["envFrom"]
    key = str(PurePosixPath(_config(manifests)["CLINFUSE_PSEUDONYM_KEY_FILE"]).parent)
    mounts = _mounts(deploy, deployment, container)
    assert mounts[key] == _mounts(deploy, cronjob, score)[key]
    # DICOM paths of a request: the cohort folder batch scoring reads, read-only, and nothing else of /data
    from clinfuse.kinds.dicom.request import SERVING_ROOT_ENV

    env = {e["name"]: e["value"] for e in container["env"]}
    root = env[SERVING_ROOT_ENV]
    assert root == str(PurePosixPath(_option(_argv(score), "--config")).parent)
    assert mounts[root] == ("pvc", "clinfuse-data", True)
    assert [p for p in mounts if p.startswith("/data")] == [root], "only the cohort folder of clinfuse-data"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "a restart keeps serving"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep", "requests in flight finish"


def test_online_scoring_runs_on_cpus_with_one_thread_per_core(manifests, deploy) -> None:
    import importlib.util

    container = _container(deploy, _find(manifests, "Deployment", "clinfuse-serving"), "serving")
    image = OUR_IMAGE.match(container["image"])
    dockerfile = deploy.parse_dockerfile(deploy.DEPLOY / f"{image.group(1)}.Dockerfile")
    torch_index = next(i.value for i in dockerfile.all("ARG") if i.value.startswith("TORCH_INDEX_URL="))
    assert torch_index.endswith("/cpu"), f"{image.group(0)} is not the CPU image"
    resources = container["resources"]
    assert "nvidia.com/gpu" not in resources["limits"]
    env = {e["name"]: e["value"] for e in container["env"]}
    threads, workers = int(env["OMP_NUM_THREADS"]), int(env["MLFLOW_MODELS_WORKERS"])
    assert threads * workers == int(resources["limits"]["cpu"]), "torch threads x workers must match the CPU limit"
    assert int(env["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"]) > 0
    mlflow = Path(importlib.util.find_spec("mlflow").submodule_search_locations[0])
    read = (mlflow / "utils" / "cli_args.py").read_text() + (mlflow / "environment_variables.py").read_text()
    for name in (n for n in env if n.startswith("MLFLOW_")):
        assert f'"{name}"' in read, f"the installed MLflow reads no {name}"


def test_online_scoring_admits_no_pod_of_the_namespace(manifests) -> None:
    namespace = {**_find(manifests, "Namespace", "clinfuse")["metadata"]["labels"],
                 "kubernetes.io/metadata.name": "clinfuse"}  # fmt: skip
    policy = _find(manifests, "NetworkPolicy", "clinfuse-serving")["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "serving"
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    for rule in policy["ingress"]:
        assert [p["port"] for p in rule["ports"]] == [8080]
        for peer in rule["from"]:
            selector = peer["namespaceSelector"]["matchLabels"]
            assert selector and not selector.items() <= namespace.items(), f"{peer} admits pods of clinfuse"
    reaches = [(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"], port["port"])
               for rule in policy["egress"] for peer in rule["to"] for port in rule["ports"]]  # fmt: skip
    assert reaches == [("mlflow", 5000)], "the scoring server reaches MLflow alone"
    mlflow = _find(manifests, "NetworkPolicy", "clinfuse-mlflow")["spec"]
    admitted = {v for rule in mlflow["ingress"] for peer in rule["from"]
                for e in peer["podSelector"]["matchExpressions"] for v in e["values"]}  # fmt: skip
    assert "serving" in admitted, "the scoring server downloads its model from MLflow"


def test_dashboard_state_users_and_settings(manifests, deploy) -> None:
    deployment = _find(manifests, "Deployment", "clinfuse-dashboard")
    container = _container(deploy, deployment, "dashboard")
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = _mounts(deploy, deployment, container)
    state = {str(PurePosixPath(env[v]).parent) for v in ("CLINFUSE_DASHBOARD_USERS", "CLINFUSE_AUDIT_LOG")}
    assert len(state) == 1
    folder = state.pop()
    kind, claim, read_only = mounts[folder]
    assert kind == "pvc" and not read_only, "users (with their lockout state) and the audit log need a writable volume"
    cronjob = _find(manifests, "CronJob", "clinfuse-score")
    job_claims = {claim for _, claim, _ in _mounts(deploy, cronjob, _container(deploy, cronjob, "score")).values()}
    assert claim not in job_claims, "the jobs must not reach the audit log"
    init = _container(deploy, deployment, "install-users")
    init_mounts = _mounts(deploy, deployment, init)
    source, target = _argv(init)[-2:]
    assert target == env["CLINFUSE_DASHBOARD_USERS"] and init_mounts[folder][:2] == ("pvc", claim)
    secret_kind, secret, _ = init_mounts[str(PurePosixPath(source).parent)]
    assert secret_kind == "secret" and secret == "clinfuse-dashboard-users"
    settings = PurePosixPath(env["CLINFUSE_DASHBOARD_CONFIG"])
    assert mounts[str(settings.parent)][:2] == ("configMap", "clinfuse-dashboard-settings")
    generator = next(
        g for g in _kustomization(deploy)["configMapGenerator"] if g["name"] == mounts[str(settings.parent)][1]
    )
    assert f"{settings.name}=dashboard-settings.yaml" in generator["files"]


def test_dashboard_settings_are_valid(deploy) -> None:
    from clinfuse.dashboards.dashboard_config import load_settings

    settings = load_settings(deploy.K8S / "dashboard-settings.yaml")
    assert settings.risk_bands.intermediate < settings.risk_bands.high


def test_config_points_at_the_services(manifests, deploy) -> None:
    config = _config(manifests)
    uri = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", config["MLFLOW_TRACKING_URI"])
    assert uri, config["MLFLOW_TRACKING_URI"]
    service = _find(manifests, "Service", uri.group(1))
    assert int(uri.group(2)) in {p["port"] for p in service["spec"]["ports"]}
    mlflow = _argv(_container(deploy, _find(manifests, "Deployment", "clinfuse-mlflow"), "mlflow"))
    assert f"{uri.group(1)}:{uri.group(2)}" in _option(mlflow, "--allowed-hosts").split(",")
    assert "--serve-artifacts" in mlflow
    key = PurePosixPath(config["CLINFUSE_PSEUDONYM_KEY_FILE"])
    for workload in (m for m in manifests if deploy.pod_template(m.doc)):
        for _, container in deploy.containers(_pod_spec(deploy, workload.doc)):
            if container.get("envFrom"):
                mounts = _mounts(deploy, workload.doc, container)
                assert mounts.get(str(key.parent), ("",))[0] == "secret", f"{workload.id}: the key is not mounted"
                # the online scoring server gets its model from MLflow and must not write the shared bundles
                home = "emptyDir" if workload.name == "clinfuse-serving" else "pvc"
                assert mounts.get(config["CLINFUSE_HOME"], ("",))[0] == home, f"{workload.id}: CLINFUSE_HOME"
    assert config.get("HOME", "").startswith("/tmp"), "HOME must be writable under a read-only root"


def test_secrets_are_placeholders_that_cannot_be_used(manifests) -> None:
    from clinfuse.platform.security.pseudonym import MIN_KEY_CHARS

    secrets = [m for m in manifests if m.kind == "Secret"]
    assert {s.name for s in secrets} == {"clinfuse-pseudonym-key", "clinfuse-dashboard-users", "clinfuse-dask-tls"}
    for secret in secrets:
        assert "data" not in secret.doc, "placeholders go in stringData"
        for key, value in secret.doc["stringData"].items():
            assert value.strip() == "REPLACE-ME", f"{secret.name}/{key} holds something other than the placeholder"
    key = _find(manifests, "Secret", "clinfuse-pseudonym-key")["stringData"]["pseudonym.key"]
    assert len(key) < MIN_KEY_CHARS, "a forgotten placeholder key must be refused by ClinFuse"


def test_kustomization_lists_every_manifest_and_image(manifests, deploy) -> None:
    kustomization = _kustomization(deploy)
    assert kustomization["namespace"] == deploy.NAMESPACE
    listed = set(kustomization["resources"])
    for name in listed:
        assert (deploy.K8S / name).is_file(), f"kustomization lists missing {name}"
    files = {m.path.name for m in manifests}
    assert listed == files - deploy.K8S_NOT_IN_KUSTOMIZATION, "every manifest is applied or deliberately left out"
    assert not listed & deploy.K8S_NOT_IN_KUSTOMIZATION
    for generator in kustomization.get("configMapGenerator") or []:
        for entry in generator["files"]:
            assert (deploy.K8S / entry.split("=")[-1]).is_file(), entry
    images = {i["name"]: i["newTag"] for i in kustomization["images"]}
    used = {c["image"] for m in manifests if deploy.pod_template(m.doc)
            for _, c in deploy.containers(_pod_spec(deploy, m.doc))}  # fmt: skip
    ours = {OUR_IMAGE.match(i).group(0).split(":")[0]: i.split(":")[1] for i in used if OUR_IMAGE.match(i)}
    assert ours == images, f"kustomization images {images} vs manifests {ours} (train-job.yaml included)"


def test_every_workload_is_covered(manifests) -> None:
    kinds = {(m.kind, m.name) for m in manifests}
    for expected in [("Deployment", "clinfuse-dashboard"), ("Service", "clinfuse-dashboard"),
                     ("CronJob", "clinfuse-score"), ("Job", "clinfuse-train-"),
                     ("Deployment", "clinfuse-dask-scheduler"), ("Deployment", "clinfuse-dask-worker"),
                     ("Deployment", "clinfuse-mlflow"), ("Deployment", "clinfuse-serving"),
                     ("Service", "clinfuse-serving")]:  # fmt: skip
        assert expected in kinds, expected


def test_kubernetes_schema_check_catches_a_typo(manifests) -> None:
    import copy

    import kubernetes_validate

    deployment = copy.deepcopy(next(m.doc for m in manifests if m.kind == "Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe", {})
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(deployment, MIN_KUBERNETES, strict=True)


def test_min_version_matches_the_runbook(deploy) -> None:
    assert f"Kubernetes {MIN_KUBERNETES} or newer" in Path(deploy.RUNBOOK).read_text()
