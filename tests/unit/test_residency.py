"""Residency and outsourcing (SPEC section 6, issue 5): where each store is, which
processor acts for which controller, and which transfers the configuration refuses."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retentiond.core.residency import (
    ADEQUACY_COUNTRIES,
    CLOUD_REGIONS,
    EEA_COUNTRIES,
    ISO_COUNTRIES,
    Controller,
    Placement,
    Processor,
    ResidencyConfig,
    Safeguard,
    StoreDeclaration,
    Zone,
    controller_for,
    country_of,
    is_private_endpoint,
    key_path,
    place_store,
    residency_rows,
    zone_of,
)
from retentiond.errors import ConfigError
from retentiond.service.setup import CONFIG_TEMPLATE
from retentiond.settings import Settings, load_settings

BASE = """\
inbox:
  - inbox/
vault: vault/
proofs: proofs/
catalog: sqlite:state/catalog.db
policies: policies/
keys:
  dir: keys/
proof_log:
  origin: example.org/test
"""

S3_BASE = """\
inbox:
  - s3://recordings/incoming/
vault: s3://vault/
proofs: s3://proofs/log/
catalog: sqlite:state/catalog.db
policies: policies/
keys:
  dir: keys/
proof_log:
  origin: example.org/test
"""


def load(tmp_path: Path, text: str, *, base: str = BASE,
         environ: dict[str, str] | None = None) -> Settings:
    cfg = tmp_path / "retentiond.yaml"
    cfg.write_text(base + textwrap.dedent(text), encoding="utf-8")
    return load_settings(cfg, environ=environ or {})


def refused(tmp_path: Path, text: str, *, base: str = BASE,
            environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, base=base, environ=environ)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "retentiond.yaml") in message
    assert info.value.exit_code == 2
    return message


def by_role(settings: Settings) -> dict[str, Placement]:
    return {p.name: p for p in settings.placements()}


# -- the tables ------------------------------------------------------------------------


def test_country_tables_are_consistent():
    assert len(ISO_COUNTRIES) == 249
    assert len(EEA_COUNTRIES - {"AX", "GP", "GF", "MQ", "RE", "YT", "MF"}) == 30  # EU27 + 3
    assert {"IS", "LI", "NO", "FR", "DE", "GR"} <= EEA_COUNTRIES
    assert EEA_COUNTRIES <= ISO_COUNTRIES and ADEQUACY_COUNTRIES <= ISO_COUNTRIES
    assert not EEA_COUNTRIES & ADEQUACY_COUNTRIES
    assert "US" not in ADEQUACY_COUNTRIES and "GB" in ADEQUACY_COUNTRIES
    assert set(CLOUD_REGIONS.values()) <= ISO_COUNTRIES
    tab = Path("/usr/share/zoneinfo/iso3166.tab")
    if tab.exists():  # tzdata's copy of ISO 3166-1
        codes = {line.split("\t")[0] for line in tab.read_text().splitlines()
                 if line and not line.startswith("#")}
        assert codes == ISO_COUNTRIES


@pytest.mark.parametrize(("region", "country"), [
    pytest.param("eu-west-3", "FR", id="aws-paris"),
    pytest.param("eu-central-2", "CH", id="aws-zurich"),
    pytest.param("EU-West-1", "IE", id="aws-case-insensitive"),
    pytest.param("us-east-1", "US", id="aws-virginia"),
    pytest.param("europe-west9", "FR", id="gcp-paris"),
    pytest.param("francecentral", "FR", id="azure-paris"),
    pytest.param("fr-par", "FR", id="scaleway-paris"),
    pytest.param("MA", "MA", id="country-code"),
    pytest.param("tn", "TN", id="country-code-lowercase"),
    pytest.param("UK", "GB", id="uk-alias"),
    pytest.param("EL", "GR", id="greece-alias"),
    pytest.param("XX", None, id="unassigned-code"),
    pytest.param("FRA", None, id="alpha-3-is-not-accepted"),
    pytest.param("mars-east-1", None, id="unknown-region"),
])
def test_country_of(region, country):
    assert country_of(region) == country


@pytest.mark.parametrize(("country", "safeguard", "zone"), [
    pytest.param("FR", None, Zone.EEA, id="eu"),
    pytest.param("NO", None, Zone.EEA, id="eea-norway"),
    pytest.param("RE", None, Zone.EEA, id="outermost-region-reunion"),
    pytest.param("CH", None, Zone.ADEQUACY, id="switzerland"),
    pytest.param("US", None, Zone.THIRD_COUNTRY, id="us-alone"),
    pytest.param("US", Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK, Zone.ADEQUACY, id="us-dpf"),
    pytest.param("US", Safeguard.STANDARD_CONTRACTUAL_CLAUSES, Zone.THIRD_COUNTRY,
                 id="us-scc-still-third-country"),
    pytest.param("MA", None, Zone.THIRD_COUNTRY, id="morocco"),
    pytest.param("PF", None, Zone.THIRD_COUNTRY, id="overseas-country-not-in-eu"),
])
def test_zone_of(country, safeguard, zone):
    assert zone_of(country, safeguard) is zone


@pytest.mark.parametrize(("endpoint", "private"), [
    pytest.param("http://127.0.0.1:9000", True, id="loopback"),
    pytest.param("http://[::1]:9000", True, id="loopback-v6"),
    pytest.param("http://10.1.2.3:9000", True, id="rfc1918"),
    pytest.param("http://minio:9000", True, id="single-label"),
    pytest.param("http://minio.minio.svc.cluster.local:9000", True, id="kubernetes"),
    pytest.param("https://s3.eu-west-3.amazonaws.com", False, id="aws"),
    pytest.param("https://s3.fr-par.scw.cloud", False, id="public"),
    pytest.param("https://8.8.8.8", False, id="public-ip"),
    pytest.param(None, False, id="none"),
])
def test_private_endpoint(endpoint, private):
    assert is_private_endpoint(endpoint) is private


def test_key_path_quotes_locations():
    assert key_path("residency", "stores", "vault", "region") == "residency.stores.vault.region"
    assert (key_path("residency", "stores", "s3://b/", "region")
            == 'residency.stores["s3://b/"].region')
    assert key_path("controllers", 0, "processor") == "controllers[0].processor"


@given(region=st.sampled_from(sorted(CLOUD_REGIONS) + sorted(ISO_COUNTRIES)
                                + ["mars-1", "XX", "eu"]),
       safeguard=st.sampled_from([None, *Safeguard]), declared=st.booleans())
def test_no_store_outside_the_eea_and_adequacy_list_is_accepted_without_safeguard(
        region, safeguard, declared):
    res = ResidencyConfig(declared=declared, stores=(
        StoreDeclaration("vault", "vault", region=region, safeguard=safeguard),))
    try:
        p = place_store(role="vault", location="/srv/vault", res=res, s3_region=None,
                        s3_endpoint=None)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    assert p.country is not None and p.zone is not None
    assert p.zone is not Zone.THIRD_COUNTRY or p.safeguard is not None
    if p.safeguard is Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK:
        assert p.country == "US"
    if p.zone is Zone.ADEQUACY and p.country not in ADEQUACY_COUNTRIES:
        assert (p.country, p.safeguard) == ("US", Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK)


# -- stores that load ------------------------------------------------------------------


@pytest.mark.parametrize(("base", "text", "role", "country", "zone", "safeguard"), [
    pytest.param(BASE, "residency: {local_country: FR}\n", "vault", "FR", Zone.EEA, None,
                 id="eea-local-folder"),
    pytest.param(BASE, 'residency: {local_country: "NO"}\n', "vault", "NO", Zone.EEA, None,
                 id="eea-norway-quoted"),
    pytest.param(S3_BASE, "s3: {region: eu-west-3}\n", "vault", "FR", Zone.EEA, None,
                 id="eea-s3-region-without-residency-section"),
    pytest.param(S3_BASE, "s3: {region: eu-west-3}\nresidency: {}\n", "proofs", "FR",
                 Zone.EEA, None, id="eea-s3-region-with-residency-section"),
    pytest.param(S3_BASE, "s3: {region: eu-central-2}\n", "vault", "CH", Zone.ADEQUACY, None,
                 id="adequacy-switzerland"),
    pytest.param(S3_BASE, "s3: {region: eu-west-2}\n", "vault", "GB", Zone.ADEQUACY, None,
                 id="adequacy-united-kingdom"),
    pytest.param(S3_BASE, "s3: {region: ap-northeast-1}\n", "vault", "JP", Zone.ADEQUACY,
                 None, id="adequacy-japan"),
    pytest.param(S3_BASE, """\
        s3: {region: us-east-1}
        residency:
          stores:
            "s3://vault/": {transfer_safeguard: eu-us-data-privacy-framework}
            "s3://proofs/log/": {transfer_safeguard: eu-us-data-privacy-framework}
            inbox: {transfer_safeguard: eu-us-data-privacy-framework}
        """, "vault", "US", Zone.ADEQUACY, Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK,
                 id="us-with-dpf"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault: {region: us-west-2, transfer_safeguard: standard-contractual-clauses}
        """, "vault", "US", Zone.THIRD_COUNTRY, Safeguard.STANDARD_CONTRACTUAL_CLAUSES,
                 id="us-with-scc"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault/: {region: MA, transfer_safeguard: binding-corporate-rules}
        """, "vault", "MA", Zone.THIRD_COUNTRY, Safeguard.BINDING_CORPORATE_RULES,
                 id="morocco-with-bcr-keyed-by-location-as-written"),
    pytest.param(S3_BASE, """\
        s3: {endpoint_url: "http://127.0.0.1:9000", region: us-east-1}
        residency: {local_country: FR}
        """, "vault", "FR", Zone.EEA, None, id="minio-on-own-network-is-local"),
    pytest.param(S3_BASE, """\
        s3: {endpoint_url: "https://s3.fr-par.scw.cloud", region: fr-par}
        residency: {local_country: DE}
        """, "vault", "FR", Zone.EEA, None, id="public-endpoint-uses-its-region"),
])
def test_store_is_placed(tmp_path, base, text, role, country, zone, safeguard):
    p = by_role(load(tmp_path, text, base=base))[role]
    assert (p.country, p.zone, p.safeguard) == (country, zone, safeguard)


def test_store_entry_by_location_wins_over_role(tmp_path):
    settings = load(tmp_path, """\
        s3: {region: eu-west-3}
        residency:
          stores:
            inbox: {region: DE}
            "s3://recordings/incoming": {region: eu-north-1}
        """, base=S3_BASE)
    assert by_role(settings)["inbox"].country == "SE"
    assert by_role(settings)["inbox"].declared_by == 'residency.stores["s3://recordings/incoming"].region'


# -- stores that are refused -----------------------------------------------------------


@pytest.mark.parametrize(("base", "text", "expected"), [
    pytest.param(S3_BASE, "s3: {region: us-east-1}\n",
                 [":11: s3.region: inbox s3://recordings/incoming/ is in us-east-1 (US)",
                  'residency.stores["s3://recordings/incoming/"].transfer_safeguard',
                  "standard-contractual-clauses", "eu-us-data-privacy-framework"],
                 id="us-without-safeguard-old-config"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault: {region: us-east-1}
        """, [":14: residency.stores.vault.region: vault", "outside the EU/EEA",
              "residency.stores.vault.transfer_safeguard"], id="us-without-safeguard"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault: {region: MA, transfer_safeguard: eu-us-data-privacy-framework}
        """, ["residency.stores.vault.transfer_safeguard: eu-us-data-privacy-framework only "
              "covers certified organisations in the United States", "is in MA"],
                 id="dpf-in-morocco"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault: {transfer_safeguard: eu-us-data-privacy-framework}
        """, ["eu-us-data-privacy-framework only covers", "is in FR"], id="dpf-in-france"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault: {region: mars-east-1}
        """, [":14: residency.stores.vault.region: unknown region 'mars-east-1'",
              "ISO 3166 country code"], id="unknown-region"),
    pytest.param(BASE, "residency: {local_country: Francia}\n",
                 ["residency.local_country: unknown country or region 'Francia'", "ISO 3166"],
                 id="unknown-local-country"),
    pytest.param(S3_BASE, "s3: {region: garage}\nresidency: {}\n",
                 ["s3.region: unknown region 'garage'",
                  'residency.stores["s3://recordings/incoming/"].region'],
                 id="unknown-s3-region-once-residency-is-declared"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault: {region: us-east-1, transfer_safeguard: scc}
        """, ["residency.stores.vault.transfer_safeguard: unknown transfer safeguard 'scc'",
              "standard-contractual-clauses, binding-corporate-rules"],
                 id="unknown-safeguard"),
    pytest.param(BASE, "residency:\n  stores: {}\n",
                 [":11: residency: inbox", "(a local folder) has no declared location",
                  "set residency.local_country"], id="local-folder-undeclared"),
    pytest.param(S3_BASE, "residency: {local_country: FR}\n",
                 ["s3://recordings/incoming/ (a bucket and s3.region is not set)",
                  'residency.stores["s3://recordings/incoming/"].region (or s3.region)'],
                 id="bucket-undeclared"),
    pytest.param(S3_BASE, "s3: {endpoint_url: 'http://10.0.0.5:9000'}\nresidency: {}\n",
                 ["a bucket on http://10.0.0.5:9000, a server on your own network",
                  "set residency.local_country"], id="private-minio-undeclared"),
    pytest.param(BASE, "residency: {local_country: NO}\n",
                 ['residency.local_country: got false: write Norway as "NO" in quotes'],
                 id="norway-unquoted"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            s3://elsewhere/: {region: FR}
        """, ['residency.stores["s3://elsewhere/"]: not a configured store'],
                 id="entry-for-no-store"),
    pytest.param(BASE, """\
        residency:
          local_country: FR
          stores:
            vault/: {region: FR}
            ./vault: {region: FR}
        """, ['residency.stores["./vault"]: the same store as residency.stores["vault/"]'],
                 id="entry-twice"),
    pytest.param(BASE, "residency: {local_country: FR, country: FR}\n",
                 ["residency.country: unknown key (known: local_country, stores)"],
                 id="unknown-key"),
    pytest.param(BASE, "residency:\n  local_country: FR\n  stores:\n    vault: eu-west-3\n",
                 ["residency.stores.vault: must be a mapping (keys: region, "
                  "transfer_safeguard)"], id="entry-not-a-mapping"),
    pytest.param(BASE, "residency: FR\n", ["residency: must be a mapping"],
                 id="section-not-a-mapping"),
])
def test_store_is_refused(tmp_path, base, text, expected):
    message = refused(tmp_path, text, base=base)
    for part in expected:
        assert part in message, message


def test_refusal_names_the_environment_variable_that_set_the_region(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "", base=S3_BASE, environ={"RETENTIOND_S3_REGION": "us-east-1"})
    message = str(info.value)
    assert "$RETENTIOND_S3_REGION (s3.region): inbox s3://recordings/incoming/" in message


# -- configs older than the residency check ----------------------------------------------


def test_old_config_without_residency_section_still_loads(tmp_path):
    settings = load(tmp_path, "")
    assert settings.controllers == () and settings.processors == ()
    assert not settings.residency.declared
    for p in settings.placements():
        assert (p.region, p.country, p.zone) == (None, None, None)
    rows = residency_rows(settings)
    assert [r["basis"] for r in rows] == ["not declared"] * 3


@pytest.mark.parametrize(("s3", "region", "country"), [
    pytest.param("{region: eu-west-3}", "eu-west-3", "FR", id="aws-eu"),
    pytest.param("{endpoint_url: 'http://127.0.0.1:9000', region: us-east-1}", None, None,
                 id="minio-default-region-says-nothing"),
    pytest.param("{endpoint_url: 'http://minio.minio.svc.cluster.local:9000', "
                 "region: us-east-1}", None, None, id="helm-minio-example"),
    pytest.param("{endpoint_url: 'https://objects.example.net', region: garage}", "garage",
                 None, id="unknown-region-reported-not-refused"),
    pytest.param("{}", None, None, id="region-from-aws-chain"),
])
def test_old_s3_config_still_loads(tmp_path, s3, region, country):
    vault = by_role(load(tmp_path, f"s3: {s3}\n", base=S3_BASE))["vault"]
    assert (vault.region, vault.country) == (region, country)


def test_init_template_declares_france_and_is_compliant(tmp_path):
    text = CONFIG_TEMPLATE.format(origin="example.org/demo")
    settings = load(tmp_path, "", base=text)
    assert settings.residency.declared and settings.residency.local_country == "FR"
    assert {(p.name, p.country, p.zone) for p in settings.placements()} == {
        ("inbox", "FR", Zone.EEA), ("vault", "FR", Zone.EEA), ("proofs", "FR", Zone.EEA)}


# -- controllers and processors ------------------------------------------------------------


@pytest.mark.parametrize(("processor", "country", "zone", "safeguard"), [
    pytest.param("{name: CallCo SARL, country: MA, transfer_safeguard: "
                 "standard-contractual-clauses}", "MA", Zone.THIRD_COUNTRY,
                 Safeguard.STANDARD_CONTRACTUAL_CLAUSES, id="morocco-with-scc"),
    pytest.param("{name: Appels Tunis, country: tn, transfer_safeguard: "
                 "binding-corporate-rules}", "TN", Zone.THIRD_COUNTRY,
                 Safeguard.BINDING_CORPORATE_RULES, id="tunisia-with-bcr"),
    pytest.param("{name: Centre Lille, country: FR}", "FR", Zone.EEA, None, id="france"),
    pytest.param("{name: Geneva Calls, country: CH}", "CH", Zone.ADEQUACY, None,
                 id="switzerland"),
    pytest.param("{name: US Calls, country: US, transfer_safeguard: "
                 "eu-us-data-privacy-framework}", "US", Zone.ADEQUACY,
                 Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK, id="us-with-dpf"),
])
def test_processor_is_accepted(tmp_path, processor, country, zone, safeguard):
    settings = load(tmp_path, f"""\
        controllers:
          - name: Banque Exemple SA
            processor: {processor}
        """)
    (proc,) = settings.processors
    assert (proc.country, proc.zone, proc.safeguard) == (country, zone, safeguard)
    assert proc.controller == "Banque Exemple SA"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("""\
        controllers:
          - name: Banque Exemple SA
            processor: {name: CallCo SARL, country: MA}
        """, [":13: controllers[0].processor.country: processor 'CallCo SARL' (for "
              "'Banque Exemple SA') is in MA, outside the EU/EEA and the adequacy list",
              "controllers[0].processor.transfer_safeguard"],
                 id="processor-in-morocco-without-safeguard"),
    pytest.param("""\
        controllers:
          - name: Banque Exemple SA
            processor: {name: CallCo, country: MA, transfer_safeguard: eu-us-data-privacy-framework}
        """, ["controllers[0].processor.transfer_safeguard: eu-us-data-privacy-framework only "
              "covers"], id="dpf-processor-in-morocco"),
    pytest.param("""\
        controllers:
          - name: Banque Exemple SA
            processor: {name: CallCo, country: Maroc, transfer_safeguard: certification}
        """, ["controllers[0].processor.country: 'Maroc' is not an ISO 3166 alpha-2"],
                 id="processor-country-not-iso"),
    pytest.param("""\
        controllers:
          - name: Banque Exemple SA
            processor: {name: CallCo, country: MA, transfer_safeguard: contract}
        """, ["unknown transfer safeguard 'contract'"], id="processor-unknown-safeguard"),
    pytest.param("""\
        controllers:
          - name: Banque Exemple SA
            processor: {country: FR}
        """, ["controllers[0].processor.name: must be a non-empty string"],
                 id="processor-without-name"),
    pytest.param("""\
        controllers:
          - processor: {name: CallCo, country: FR}
        """, ["controllers[0].name: must be a non-empty string"], id="controller-without-name"),
    pytest.param("""\
        controllers:
          - {name: A}
          - {name: B}
        """, [":13: controllers[1]: controllers[0] already has no inboxes"],
                 id="two-defaults"),
    pytest.param("""\
        controllers:
          - {name: A, inboxes: [other/]}
        """, ["controllers[0].inboxes[0]: 'other/' is not one of the inboxes"],
                 id="inbox-not-configured"),
    pytest.param("""\
        controllers:
          - {name: A, inboxes: [inbox/]}
          - {name: B, inboxes: ["./inbox"]}
        """, ["controllers[1].inboxes[0]: './inbox' already belongs to controllers[0]"],
                 id="inbox-claimed-twice"),
    pytest.param("""\
        controllers:
          - {name: A, processor: {name: P, country: FR, site: Lille}}
        """, ["controllers[0].processor.site: unknown key"], id="processor-unknown-key"),
    pytest.param("controllers: {name: A}\n", ["controllers: must be a list"],
                 id="controllers-not-a-list"),
])
def test_processor_is_refused(tmp_path, text, expected):
    message = refused(tmp_path, text)
    for part in expected:
        assert part in message, message


def test_controller_for_recordings_by_inbox(tmp_path):
    base = BASE.replace("  - inbox/\n", "  - inbox/\n  - inbox-b/\n  - s3://calls/tunis/\n")
    settings = load(tmp_path, """\
        s3: {region: eu-west-3}
        controllers:
          - name: Banque Exemple SA
            processor: {name: CallCo SARL, country: MA, transfer_safeguard: standard-contractual-clauses}
            inboxes: [s3://calls/tunis]
          - name: Assurance Exemple
            inboxes: [inbox-b/]
          - name: Groupe Exemple
            processor: {name: Centre Lille, country: FR}
        """, base=base)
    inbox, inbox_b = tmp_path / "inbox", tmp_path / "inbox-b"
    assert settings.controller_for("s3://calls/tunis/2026/a.wav") == (
        "Banque Exemple SA", "CallCo SARL")
    assert settings.controller_for(f"{inbox_b}/a.wav") == ("Assurance Exemple", None)
    assert settings.controller_for(f"file://{inbox_b}/x/a.wav") == ("Assurance Exemple", None)
    # path boundary: inbox-b is not inside inbox; the default takes inbox and the rest
    assert settings.controller_for(f"{inbox}/a.wav") == ("Groupe Exemple", "Centre Lille")
    assert settings.controller_for("/elsewhere/cli-ingest.wav") == (
        "Groupe Exemple", "Centre Lille")
    rows = [r for r in residency_rows(settings) if r["kind"] == "processor"]
    assert [(r["controller"], r["processor"], r["country"], r["zone"], r["safeguard"])
            for r in rows] == [
        ("Banque Exemple SA", "CallCo SARL", "MA", "third-country",
         "standard-contractual-clauses"),
        ("Assurance Exemple", None, None, None, None),
        ("Groupe Exemple", "Centre Lille", "FR", "eea", None)]
    assert rows[0]["inboxes"] == ["s3://calls/tunis/"] and rows[2]["default"] is True


@pytest.mark.parametrize(("controllers", "source", "expected"), [
    pytest.param((), "/srv/inbox/a.wav", (None, None), id="none-configured"),
    pytest.param((Controller("A", None, ("/srv/inbox",)),), "/srv/inbox2/a.wav",
                 (None, None), id="no-match-no-default"),
    pytest.param((Controller("A", None, ("/srv/in",)), Controller("B", None, ("/srv/in/x",))),
                 "/srv/in/x/a.wav", ("B", None), id="longest-inbox-wins"),
    pytest.param((Controller("A", None, ("s3://b/p/",)),), "s3://b/pq/a.wav", (None, None),
                 id="s3-prefix-boundary"),
    pytest.param((Controller("A", Processor("P", "MA", Zone.THIRD_COUNTRY,
                                            Safeguard.CERTIFICATION, "A")),),
                 "s3://any/a.wav", ("A", "P"), id="single-default"),
])
def test_controller_for(controllers, source, expected):
    assert controller_for(controllers, source) == expected


def test_value_types_refuse_inconsistent_states():
    with pytest.raises(ValueError, match="third country"):
        Processor("P", "MA", Zone.THIRD_COUNTRY, None, "A")
    with pytest.raises(ValueError, match="role"):
        Placement("backup", "/x", "FR", "FR", Zone.EEA, None)
    with pytest.raises(ValueError, match="together"):
        Placement("vault", "/x", "FR", "FR", None, None)


def test_residency_rows_are_json_for_the_report(tmp_path):
    settings = load(tmp_path, """\
        s3: {region: us-east-1}
        residency:
          local_country: FR
          stores:
            "s3://vault/": {transfer_safeguard: standard-contractual-clauses}
            proofs: {region: eu-west-3}
        controllers:
          - name: Banque Exemple SA
            processor: {name: CallCo SARL, country: MA, transfer_safeguard: binding-corporate-rules}
        """, base=S3_BASE.replace("s3://recordings/incoming/", "inbox/"))
    rows = residency_rows(settings)
    assert json.loads(json.dumps(rows)) == rows
    stores = {r["role"]: r for r in rows if r["kind"] == "store"}
    assert stores["inbox"] == {
        "kind": "store", "role": "inbox", "location": str(tmp_path / "inbox"),
        "region": "FR", "country": "FR", "zone": "eea", "safeguard": None,
        "basis": "within the EU/EEA (no transfer)", "declared_by": "residency.local_country"}
    assert (stores["vault"]["region"], stores["vault"]["zone"], stores["vault"]["basis"]) == (
        "us-east-1", "third-country", "standard contractual clauses (GDPR Art. 46(2)(c))")
    assert stores["vault"]["declared_by"] == "s3.region"
    assert stores["proofs"]["declared_by"] == "residency.stores.proofs.region"
    (proc,) = [r for r in rows if r["kind"] == "processor"]
    assert proc["basis"] == "binding corporate rules (GDPR Art. 47)"
    assert proc["inboxes"] == [] and proc["default"] is True
