"""Network isolation of the deployment: MLflow and the Dask cluster authenticate nobody (and Dask unpickles what it
is sent), so only the workloads that need them may reach them, in Kubernetes (NetworkPolicy) and in compose
(networks). The NetworkPolicy semantics below are the API's: a pod is isolated in a direction once any policy of
that type selects it, and a connection needs both the source's egress and the destination's ingress to admit it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
NAME = "app.kubernetes.io/name"
ANY_PORT = None

# Who must reach what (workload name label -> the servers and ports it talks to). Everything else is refused.
NEEDS = {
    "train": {("mlflow", 5000)},
    "score": {("mlflow", 5000), ("dask-scheduler", 8786), ("dask-worker", ANY_PORT)},
    "cli": {("mlflow", 5000)},
    "serving": {("mlflow", 5000)},
    "dask-worker": {("dask-scheduler", 8786), ("dask-worker", ANY_PORT)},
    "dask-scheduler": {("dask-worker", ANY_PORT)},
    "dashboard": set(),
    "mlflow": set(),
}
SERVER_PORTS = {"mlflow": [5000], "dask-scheduler": [8786, 8787], "dask-worker": [ANY_PORT], "dashboard": [8501],
                "serving": [8080]}
# A pod an attacker starts in the namespace, carrying the labels every ClinFuse object shares.
CURIOUS_POD = {"app.kubernetes.io/part-of": "clinfuse", NAME: "curious"}


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


@cache
def _manifests() -> list[dict]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in _documents(p) if "kind" in d]


def _pod_labels() -> dict[str, dict[str, str]]:
    """Workload name -> pod template labels, for every Deployment, Job and CronJob."""
    pods = {}
    for doc in _manifests():
        spec = doc.get("spec") or {}
        if doc["kind"] in ("Deployment", "Job"):
            template = spec["template"]
        elif doc["kind"] == "CronJob":
            template = spec["jobTemplate"]["spec"]["template"]
        else:
            continue
        labels = template["metadata"]["labels"]
        pods[labels[NAME]] = labels
    return pods


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return True  # pod addresses may fall inside any block
    namespace = {"kubernetes.io/metadata.name": "clinfuse"}
    if "namespaceSelector" in peer and not _selects(peer["namespaceSelector"], namespace):
        return False
    return _selects(peer.get("podSelector") or {}, labels)


def _port_matches(rule_ports: list[dict] | None, port: int | None) -> bool:
    if not rule_ports:
        return True
    return any(p.get("port") is None or port is None or p.get("port") == port for p in rule_ports)


def _admits(direction: str, own: dict[str, str], other: dict[str, str], port: int | None) -> bool:
    """Whether the policies let `own` pod receive from (Ingress) or send to (Egress) `other` on `port`."""
    policies = [d["spec"] for d in _manifests() if d["kind"] == "NetworkPolicy"]
    applying = [p for p in policies if direction in p.get("policyTypes", []) and _selects(p["podSelector"], own)]
    if not applying:
        return True
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in applying:
        for rule in policy.get(key) or []:
            if not _port_matches(rule.get("ports"), port):
                continue
            if not rule.get(peers) or any(_peer_matches(peer, other) for peer in rule[peers]):
                return True
    return False


def _reaches(client: dict[str, str], server: dict[str, str], port: int | None) -> bool:
    return _admits("Egress", client, server, port) and _admits("Ingress", server, client, port)


@pytest.fixture(scope="module")
def pods() -> dict[str, dict[str, str]]:
    found = _pod_labels()
    assert set(NEEDS) <= set(found), f"workloads missing from deploy/k8s: {sorted(set(NEEDS) - set(found))}"
    return found


def test_k8s_the_dashboard_reaches_neither_mlflow_nor_dask(pods) -> None:
    for server in ("mlflow", "dask-scheduler", "dask-worker"):
        for port in SERVER_PORTS[server]:
            assert not _reaches(pods["dashboard"], pods[server], port), f"the dashboard reaches {server}:{port}"


def test_k8s_each_workload_reaches_exactly_what_it_needs(pods) -> None:
    wrong = []
    for client, needs in NEEDS.items():
        for server, ports in SERVER_PORTS.items():
            for port in ports:
                needed = (server, port) in needs or (server, ANY_PORT) in needs
                if client != server and _reaches(pods[client], pods[server], port) != needed:
                    wrong.append(f"{client} -> {server}:{port} {'refused' if needed else 'admitted'}")
    assert not wrong, wrong


def test_k8s_a_curious_pod_in_the_namespace_reaches_no_unauthenticated_service(pods) -> None:
    for server in ("mlflow", "dask-scheduler", "dask-worker", "serving"):
        for port in SERVER_PORTS[server]:
            assert not _reaches(CURIOUS_POD, pods[server], port), f"any pod labelled part-of=clinfuse reaches {server}"


def test_k8s_default_denies_ingress_and_egress() -> None:
    policies = [d["spec"] for d in _manifests() if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["podSelector"] == {} and not p.get("ingress") and not p.get("egress")]
    assert any({"Ingress", "Egress"} <= set(p.get("policyTypes", [])) for p in deny), "no default deny both ways"


# ---------------------------------------------------------------------------------------------------------------
# compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _networks(service: dict) -> set[str]:
    if "network_mode" in service:
        return set()
    networks = service.get("networks", ["default"])
    return set(networks)


def _sharing_a_network(compose: dict, name: str) -> set[str]:
    services = compose["services"]
    own = _networks(services[name])
    return {other for other, service in services.items() if other != name and own & _networks(service)}


def test_compose_every_service_is_hardened(compose) -> None:
    for name, service in compose["services"].items():
        user = str(service.get("user", ""))
        assert user, f"{name}: no user:"
        assert service.get("read_only") is True, f"{name}: root filesystem is writable"
        assert service.get("cap_drop") == ["ALL"], f"{name}: capabilities not dropped"
        assert "no-new-privileges:true" in (service.get("security_opt") or []), f"{name}: no-new-privileges"
        if user.split(":")[0] == "0":
            # only a one-off volume preparation, offline, with nothing but CAP_CHOWN, may run as root
            assert service.get("cap_add") == ["CHOWN"] and service.get("network_mode") == "none", name
            assert service.get("restart", "no") == "no", name


def test_compose_the_dashboard_shares_no_network_with_mlflow_or_dask(compose) -> None:
    peers = _sharing_a_network(compose, "dashboard")
    assert not peers & {"mlflow", "dask-scheduler", "dask-worker"}, f"the dashboard can reach {sorted(peers)}"


def test_compose_only_the_clients_that_need_them_reach_mlflow_and_dask(compose) -> None:
    assert _sharing_a_network(compose, "mlflow") == {"train", "score", "cli", "serving"}
    assert _sharing_a_network(compose, "serving") == {"mlflow", "train", "score", "cli"}
    assert _sharing_a_network(compose, "dask-scheduler") == {"dask-worker", "score"}
    assert _sharing_a_network(compose, "dask-worker") == {"dask-scheduler", "score"}


def test_compose_back_end_networks_are_internal(compose) -> None:
    """A network that reaches beyond the host (to carry a published port) holds that one service alone; every network
    services share is internal."""
    services = compose["services"]
    for network in {n for s in services.values() for n in _networks(s)}:
        members = sorted(name for name, s in services.items() if network in _networks(s))
        if ((compose.get("networks") or {}).get(network) or {}).get("internal") is not True:
            assert len(members) == 1, f"{network} reaches beyond the host and joins {members}"
