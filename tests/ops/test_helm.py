"""The Helm chart, rendered offline by Helm's own engine (helm_python, no cluster): lint
strict; every manifest of several value sets validates against the Kubernetes schemas
(kubernetes-validate, strict), the CRDs (ServiceMonitor, PrometheusRule) structurally;
and what the manifests say is consistent with retentiond itself: the rendered
configuration loads, the policies parse, probes hit /healthz and /readyz on the port the
daemon listens on, every path it writes is a writable volume, the key-copying init
script yields a key folder retentiond accepts, and the PrometheusRule is the rule file
promtool tests."""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from retentiond.core.policy import load_policy_dir
from retentiond.crypto.keys import FileKeyProvider
from retentiond.errors import ConfigError
from retentiond.service.events import read_token
from retentiond.service.keyrotation import COPY_MARKER
from retentiond.service.setup import init_setup
from retentiond.settings import load_settings
from tests.ops.conftest import ALERTS, CHART, DASHBOARD, ROOT

RELEASE, NAMESPACE = "rtd", "compliance"
ORIGIN = "retentiond.local/rtd-0123abcd/deletions"
KUBE_VERSIONS = ("1.25", "1.30", kubernetes_validate.latest_version())
STATE_ROOT = "/var/lib/retentiond"

BASE: dict[str, Any] = {"config": {"proofLogOrigin": ORIGIN},
                        "keys": {"existingSecret": "retentiond-keys"}}


def minio_values() -> dict[str, Any]:
    values = yaml.safe_load((ROOT / "helm" / "examples" / "minio-values.yaml").read_text())
    values["config"]["proofLogOrigin"] = ORIGIN
    return values


def full_values() -> dict[str, Any]:
    """Every optional feature on, and the chart making its own Secrets."""
    return {
        "fullnameOverride": "recordings-retention",
        "image": {"repository": "registry.example/retentiond", "tag": "9.9.9",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "config": {"proofLogOrigin": ORIGIN, "inbox": ["s3://recordings/in/", "/var/lib/retentiond/drop"],
                   "vault": "s3://vault/", "proofs": "/var/lib/retentiond/proof-log",
                   "s3": {"endpoint_url": "https://s3.eu-west-3.amazonaws.com",
                          "region": "eu-west-3"},
                   "logLevel": "debug", "sweep": {"interval_seconds": 30},
                   "extra": {"vault": "/ignored", "log_level": "error"}},
        "keys": {"files": {"kek.current": "kek-x", "proof-log.vkey": "v"}},
        "awsCredentials": {"accessKeyId": "AKIAEXAMPLEKEYID", "secretAccessKey": "sEcReT/value+1"},
        "policies": {"files": {"house.yaml": "version: 1\nname: house\npurposes:\n  quality:\n"
                                             "    legal_basis: consent\n    retention: P1M\n"}},
        "persistence": {"existingClaim": "retentiond-state"},
        "metrics": {"port": 9500}, "service": {"port": 80, "annotations": {"a": "b"}},
        "events": {"webhook": {"port": 9465, "tokenSecret": "hook-token", "tokenKey": "t"}},
        "serviceAccount": {"name": "rtd-sa",
                           "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "grafanaDashboard": {"enabled": True},
        "podDisruptionBudget": {"enabled": False},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "podAnnotations": {"x": "y"}, "podLabels": {"team": "dpo"},
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "priorityClassName": "important",
    }


SCENARIOS = {
    "default": BASE,
    "minio": minio_values(),
    "full": full_values(),
    "no-persistence": {"config": {"proofLogOrigin": ORIGIN, "extra": {"s3": {"region": "eu-west-3"}}},
                       "keys": {"existingSecret": "k"}, "persistence": {"enabled": False}},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    out = chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in by_kind(docs, kind)])
    return found[0]


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "StatefulSet")["spec"]["template"]


def container(docs: list[dict[str, Any]], name: str = "retentiond") -> dict[str, Any]:
    spec = pod(docs)["spec"]
    return next(c for c in spec["containers"] + spec["initContainers"] if c["name"] == name)


def rendered_config(docs: list[dict[str, Any]], tmp_path: Path) -> tuple[str, Path]:
    cm = next(d for d in by_kind(docs, "ConfigMap") if "retentiond.yaml" in d["data"])
    path = tmp_path / "retentiond.yaml"
    path.write_text(cm["data"]["retentiond.yaml"])
    return cm["metadata"]["name"], path


# -- lint and schemas ------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, BASE, full_values()], ids=["defaults", "base", "full"])
def test_helm_lint_strict(values):
    report = helm_python.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == [], report
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_validates_against_kubernetes_schemas(scenario):
    docs = render(SCENARIOS[scenario])
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: test_prometheus_operator_objects
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: "
                            f"{path}: {e.message}")
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_kinds_per_scenario():
    def kinds(values: dict[str, Any]) -> list[str]:
        return sorted(d["kind"] for d in render(values))

    assert kinds(BASE) == ["ConfigMap", "ConfigMap", "PodDisruptionBudget", "Service",
                           "ServiceAccount", "StatefulSet"]
    assert kinds(full_values()) == ["ConfigMap", "ConfigMap", "ConfigMap", "PrometheusRule",
                                    "Secret", "Secret", "Service", "ServiceAccount",
                                    "ServiceMonitor", "StatefulSet"]
    assert "Secret" not in kinds(minio_values())  # existing Secrets only: nothing inline


@pytest.mark.parametrize(("values", "message"), [
    pytest.param({"keys": {"existingSecret": "k"}}, "config.proofLogOrigin is required",
                 id="no-origin"),
    pytest.param({"config": {"proofLogOrigin": ORIGIN}}, "keys: set keys.existingSecret",
                 id="no-keys"),
    pytest.param({**BASE, "awsCredentials": {"accessKeyId": "AKIA"}},
                 "awsCredentials.secretAccessKey is required", id="half-credentials"),
])
def test_missing_required_values_fail_with_a_message(values, message):
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize("values", [
    pytest.param({**BASE, "bogus": 1}, id="unknown-key"),
    pytest.param({**BASE, "config": {"proofLogOrigin": "has space"}}, id="bad-origin"),
    pytest.param({**BASE, "metrics": {"port": "9464"}}, id="port-as-string"),
    pytest.param({**BASE, "config": {"proofLogOrigin": ORIGIN, "logLevel": "loud"}},
                 id="bad-log-level"),
    pytest.param({**BASE, "replicas": 3}, id="replicas-are-not-a-value"),
])
def test_values_schema_rejects_mistakes(values):
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


# -- the Prometheus Operator objects ---------------------------------------------------


def test_prometheus_operator_objects():
    docs = render(full_values())
    sm, rule = one(docs, "ServiceMonitor"), one(docs, "PrometheusRule")
    for obj in (sm, rule):
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["name"] and obj["metadata"]["labels"]["release"] == "prom"
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    service = one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s",
                        "scrapeTimeout": "10s"}
    assert any(p["name"] == "metrics" for p in service["spec"]["ports"])
    # the PrometheusRule is the rule file promtool checks and unit-tests, unchanged
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert isinstance(r["expr"], str) and ("alert" in r) != ("record" in r)
            assert r.get("labels", {}).get("severity") in ("warning", "critical")
    dashboard = one(docs, "ConfigMap", "recordings-retention-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["retentiond.json"]) == json.loads(DASHBOARD.read_text())


# -- consistency with retentiond itself ------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_configuration_loads_and_matches_the_pod(scenario, tmp_path):
    docs = render(SCENARIOS[scenario])
    cm_name, config = rendered_config(docs, tmp_path)
    settings = load_settings(config, environ={})
    spec = pod(docs)["spec"]
    main = container(docs)
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    env = {e["name"]: e for e in main["env"]}
    config_dir = str(Path(env["RETENTIOND_CONFIG"]["value"]).parent)
    assert Path(env["RETENTIOND_CONFIG"]["value"]).name == "retentiond.yaml"
    assert volumes[mounts[config_dir]["name"]]["configMap"]["name"] == cm_name
    assert main["command"] == ["retentiond", "run"]

    def writable(path: str) -> bool:
        mount = max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")),
                    key=len, default=None)
        return mount is not None and not mounts[mount].get("readOnly", False)

    local = [p for p in (*settings.inbox, settings.vault, settings.proofs) if "://" not in p]
    for path in [*local, str(settings.state_dir), str(settings.catalog_path),
                 str(settings.keys_dir), "/tmp"]:
        assert writable(path), f"{path} is not on a writable volume"
    assert settings.state_dir == Path(STATE_ROOT) / "state"
    assert not writable(str(settings.policies)) and not writable(config_dir)
    assert str(settings.policies) in mounts
    # the daemon listens on every address, on the port the probes and Service use
    host, _, port = (settings.metrics_addr or "").rpartition(":")
    assert host == "0.0.0.0"
    (cport,) = [p for p in main["ports"] if p["name"] == "metrics"]
    assert cport["containerPort"] == int(port)
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # the init container prepares exactly the folders the configuration points at
    init = container(docs, "prepare")
    assert init["command"][3] == str(settings.keys_dir)
    folders = json.loads(init["command"][4])
    assert sorted(folders) == sorted({*local, str(settings.state_dir)})


def test_config_extra_is_merged_and_chart_keys_win(tmp_path):
    docs = render(SCENARIOS["no-persistence"])
    settings = load_settings(rendered_config(docs, tmp_path)[1], environ={})
    assert settings.s3 == {"region": "eu-west-3"}
    state = next(v for v in pod(docs)["spec"]["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "emptyDir": {}}
    docs = render(full_values())
    settings = load_settings(rendered_config(docs, tmp_path)[1], environ={})
    assert settings.vault == "s3://vault/" and settings.log_level == "debug"
    assert settings.sweep_interval_seconds == 30


def test_minio_setup_takes_credentials_from_a_secret_only(tmp_path):
    docs = render(minio_values())
    settings = load_settings(rendered_config(docs, tmp_path)[1], environ={})
    assert settings.inbox == ("s3://recordings/incoming/",)
    assert settings.vault == "s3://vault/recordings/" and settings.proofs == "s3://proofs/log/"
    assert settings.s3 == {"endpoint_url": "http://minio.minio.svc.cluster.local:9000",
                           "region": "us-east-1", "addressing_style": "path"}
    env = {e["name"]: e for e in container(docs)["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "retentiond-s3", "key": name}
        assert "value" not in env[name]
    # only the catalog, audit log and locks stay on the volume
    init = container(docs, "prepare")
    assert json.loads(init["command"][4]) == [f"{STATE_ROOT}/state"]


def test_inline_secrets_stay_in_secrets():
    docs = render(full_values())
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    aws = secrets["recordings-retention-aws"]["stringData"]
    assert aws == {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID",
                   "AWS_SECRET_ACCESS_KEY": "sEcReT/value+1"}
    assert secrets["recordings-retention-keys"]["stringData"] == {"kek.current": "kek-x",
                                                                 "proof-log.vkey": "v"}
    others = yaml.safe_dump([d for d in docs if d["kind"] != "Secret"])
    assert "sEcReT/value+1" not in others and "AKIAEXAMPLEKEYID" not in others
    keys_volume = next(v for v in pod(docs)["spec"]["volumes"] if v["name"] == "keys-source")
    assert keys_volume["secret"]["secretName"] == "recordings-retention-keys"
    annotations = pod(docs)["metadata"]["annotations"]
    changed = full_values()
    changed["awsCredentials"]["secretAccessKey"] = "rotated"
    after = pod(render(changed))["metadata"]["annotations"]
    assert after["checksum/secret"] != annotations["checksum/secret"]  # a new key restarts
    assert after["checksum/config"] == annotations["checksum/config"]


def test_default_policies_are_the_shipped_pack_and_parse(tmp_path):
    docs = render(BASE)
    cm = one(docs, "ConfigMap", f"{RELEASE}-retentiond-policies")
    shipped = {p.name: p.read_text() for p in (ROOT / "policies").glob("*.yaml")}
    assert cm["data"] == shipped
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text)
    assert load_policy_dir(tmp_path).purposes
    volumes = {v["name"]: v for v in pod(docs)["spec"]["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == cm["metadata"]["name"]
    # an existing ConfigMap replaces the chart's
    docs = render({**BASE, "policies": {"existingConfigMap": "house-policies"}})
    assert len(by_kind(docs, "ConfigMap")) == 1
    volumes = {v["name"]: v for v in pod(docs)["spec"]["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == "house-policies"


def test_chart_policy_copy_matches_the_repository():
    chart = {p.name: p.read_bytes() for p in (CHART / "files" / "policies").glob("*.yaml")}
    repo = {p.name: p.read_bytes() for p in (ROOT / "policies").glob("*.yaml")}
    assert chart == repo, "helm/retentiond/files/policies/ must be a copy of policies/"


def test_pod_security():
    for values in (BASE, full_values()):
        docs = render(values)
        sts = one(docs, "StatefulSet")
        assert sts["spec"]["replicas"] == 1
        template = sts["spec"]["template"]
        assert sts["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        spec = template["spec"]
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec["initContainers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
        assert spec["terminationGracePeriodSeconds"] >= 30
        pdbs = by_kind(docs, "PodDisruptionBudget")
        for pdb in pdbs:
            assert pdb["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
            assert "minAvailable" not in pdb["spec"]  # would block node drains forever


def test_persistence_modes():
    sts = one(render(BASE), "StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    sts = one(render(full_values()), "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    state = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "persistentVolumeClaim": {"claimName": "retentiond-state"}}


def test_init_script_makes_a_key_folder_retentiond_accepts(tmp_path):
    """Reproduce a Secret volume with an fsGroup (files 0440 behind ..data symlinks) from
    the keys of a real `retentiond init`, run the chart's own prepare.py on it, and open
    the result with retentiond's key provider, which refuses group-readable keys."""
    setup = tmp_path / "setup"
    init_setup(setup)
    secret = tmp_path / "secret"
    data = secret / "..2026_11_23_09_00_00.000000001"
    data.mkdir(parents=True)
    for f in (setup / "keys").iterdir():
        (data / f.name).write_bytes(f.read_bytes())
        (data / f.name).chmod(0o440)
    os.symlink(data.name, secret / "..data")
    for f in data.iterdir():
        os.symlink(f"..data/{f.name}", secret / f.name)
    with pytest.raises(Exception, match="group or others"):
        FileKeyProvider(secret)  # as mounted, retentiond would refuse the keys

    docs = render(BASE)
    script = tmp_path / "prepare.py"
    script.write_text(one(docs, "ConfigMap", f"{RELEASE}-retentiond")["data"]["prepare.py"])
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o777)
    run_dir.chmod(0o777)  # an emptyDir is world-writable
    keys_dir = run_dir / "keys"
    folders = [str(tmp_path / "state" / "vault"), str(tmp_path / "state" / "state")]
    p = subprocess.run([sys.executable, str(script), str(secret), str(keys_dir),
                        json.dumps(folders)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for f in keys_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600 and not f.is_symlink()
    assert sorted(f.name for f in keys_dir.iterdir()) == sorted(
        [*(f.name for f in (setup / "keys").iterdir()), COPY_MARKER])
    provider = FileKeyProvider(keys_dir)
    assert provider.current_kek_id()
    assert all(Path(f).is_dir() for f in folders)
    # `keys rotate` refuses this in-memory copy: a new key would be lost with the pod
    tune = (setup / "retentiond.yaml").read_text().replace("dir: keys/", f"dir: {keys_dir}")
    (setup / "retentiond.yaml").write_text(tune)
    p = subprocess.run([sys.executable, "-m", "retentiond", "--config",
                        str(setup / "retentiond.yaml"), "keys", "rotate"],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "copy of the keys Secret" in p.stderr, p.stderr
    assert FileKeyProvider(keys_dir).kek_ids() == provider.kek_ids()
    # and an empty Secret is refused loudly rather than starting without keys
    empty = tmp_path / "empty"
    empty.mkdir()
    p = subprocess.run([sys.executable, str(script), str(empty), str(tmp_path / "k2"), "[]"],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "no key file" in p.stderr


def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(leaf_keys(value, path + "."))
        else:
            out.append(path)
    return out


def test_every_value_is_documented():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    missing = [k for k in leaf_keys(values) if k not in documented]
    assert not missing, f"values missing from helm/retentiond/README.md: {missing}"
    unknown = sorted(documented - set(leaf_keys(values)))
    assert not unknown, f"README documents values that do not exist: {unknown}"
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]) == set(values)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_declares_where_its_stores_are(scenario, tmp_path):
    """The chart's default residency (local_country FR, as `retentiond init` writes) places
    every store of every scenario: the volume, in-cluster MinIO, an AWS region."""
    settings = load_settings(rendered_config(render(SCENARIOS[scenario]), tmp_path)[1],
                             environ={})
    assert settings.residency.declared and settings.residency.local_country == "FR"
    assert {p.name for p in settings.placements()} >= {"vault", "proofs"}


def test_s3_batch_delete_value_reaches_the_configuration(tmp_path):
    """Ceph RGW 16.2 with removal notifications needs ``s3.batch_delete: false``."""
    values = copy.deepcopy(SCENARIOS["minio"])
    values.setdefault("config", {}).setdefault("s3", {})["batch_delete"] = False
    settings = load_settings(rendered_config(render(values), tmp_path)[1], environ={})
    assert settings.s3_batch_delete is False
    values["config"]["s3"]["batch_delete"] = "no"
    with pytest.raises(Exception, match="batch_delete"):
        render(values)  # the values schema wants a boolean


def test_residency_and_controllers_values_reach_the_configuration(tmp_path):
    values = copy.deepcopy(BASE)
    values["config"]["residency"] = {
        "local_country": "DE", "stores": {"vault": {"region": "eu-central-1"}}}
    values["config"]["controllers"] = [{
        "name": "Banque Exemple SA",
        "processor": {"name": "CallCo SARL", "country": "MA",
                      "transfer_safeguard": "standard-contractual-clauses"}}]
    settings = load_settings(rendered_config(render(values), tmp_path)[1], environ={})
    assert settings.residency.local_country == "DE"
    assert [c.name for c in settings.controllers] == ["Banque Exemple SA"]
    assert [p.name for p in settings.processors] == ["CallCo SARL"]
    values["config"]["residency"] = {"local_country": "FR", "oops": 1}
    with pytest.raises(Exception, match=r"oops|additional"):
        render(values)  # the values schema refuses an unknown residency key


def test_events_webhook_value_opens_a_port_and_hands_over_the_token(tmp_path):
    """``events.webhook``: the daemon listens for S3 event notifications on the pod's
    ``events`` port and the Service's, and reads the token from a 0600 copy the init
    container makes of the Secret (retentiond refuses a group-readable token file)."""
    values = copy.deepcopy(SCENARIOS["minio"])
    values["config"].setdefault("extra", {})["events"] = {"minio_listen": False}
    values["events"] = {"webhook": {"port": 9465, "tokenSecret": "hook-token"}}
    docs = render(values)
    settings = load_settings(rendered_config(docs, tmp_path)[1], environ={})
    assert settings.webhook_addr == "0.0.0.0:9465"
    assert str(settings.webhook_token_file) == "/run/retentiond/webhook.token"
    assert settings.minio_listen is False  # config.extra's events keys are kept
    main = container(docs)
    assert {"name": "events", "containerPort": 9465, "protocol": "TCP"} in main["ports"]
    service = one(docs, "Service")
    assert {"name": "events", "port": 9465, "targetPort": "events",
            "protocol": "TCP"} in service["spec"]["ports"]
    init = container(docs, "prepare")
    assert init["command"][5:] == ["/etc/retentiond/webhook-token/token",
                                   "/run/retentiond/webhook.token"]
    spec = pod(docs)["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "webhook-token-source"]
    assert volume["secret"]["secretName"] == "hook-token"
    assert [m["name"] for m in init["volumeMounts"]].count("webhook-token-source") == 1
    assert all(m["name"] != "webhook-token-source" for m in main["volumeMounts"])
    for version in KUBE_VERSIONS:
        for doc in docs:
            if not doc["apiVersion"].startswith("monitoring.coreos.com/"):  # CRDs
                kubernetes_validate.validate(doc, version, strict=True)

    # the init script's copy is one retentiond accepts, from a Secret volume's 0440 file
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text("s3cr3t-token\n")
    (secret / "token").chmod(0o440)
    script = tmp_path / "prepare.py"
    script.write_text(one(docs, "ConfigMap", f"{RELEASE}-retentiond")["data"]["prepare.py"])
    keys = tmp_path / "keysrc"
    keys.mkdir()
    (keys / "kek.current").write_text("x")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    token_file = run_dir / "webhook.token"
    p = subprocess.run([sys.executable, str(script), str(keys), str(run_dir / "keys"), "[]",
                        str(secret / "token"), str(token_file)],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert read_token(token_file) == "s3cr3t-token"
    with pytest.raises(ConfigError, match=r"readable by group or others \(mode 0440\)"):
        read_token(secret / "token")  # as mounted, it would be refused


def test_events_webhook_is_off_by_default():
    docs = render(BASE)
    assert all(p["name"] != "events" for p in container(docs)["ports"])
    assert all(p["name"] != "events" for p in one(docs, "Service")["spec"]["ports"])
    assert "events" not in yaml.safe_load(
        next(d for d in by_kind(docs, "ConfigMap")
             if "retentiond.yaml" in d["data"])["data"]["retentiond.yaml"])
