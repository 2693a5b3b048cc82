"""Residency and outsourcing: where each store is, who processes the recordings, and
whether a transfer outside the EU/EEA is covered (GDPR chapter V; SPEC section 6).

Pure: no file, socket or environment access. ``retentiond.settings`` parses the
configuration and calls :func:`place_stores` and :func:`check_processor`; both raise a
``ConfigError`` naming the config file, line and key when a store or a processor sits
outside the EU/EEA and the adequacy list without a transfer safeguard, when a region is
unknown (fail closed: we cannot tell where the data is), or when a safeguard is unknown or
does not apply there. CNIL: "Si par ailleurs, l'infogérant n'est pas situé sur le
territoire national ou sur celui de l'Union européenne, la problématique d'un possible
flux transfrontière [...] nécessitera aussi une attention toute particulière"
(context/001_aef597fe755596ca.txt); "le sous-traitant doit présenter des garanties
suffisantes" (context/000_822542ba0a462e32.txt). See docs/residency.md.

Lists as of 2025 (update them with the Commission's adequacy decisions):
EU/EEA = EU27 + IS, LI, NO; adequacy = AD AR CA FO GG IL IM JP JE NZ KR CH GB UY, plus
the United States for organisations certified under the EU-US Data Privacy Framework,
which only counts when the configuration names ``eu-us-data-privacy-framework``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlparse

from retentiond.errors import ConfigError


class Zone(StrEnum):
    """Where a country stands for GDPR transfers."""

    EEA = "eea"  # EU/EEA: no transfer
    ADEQUACY = "adequacy"  # Art. 45 adequacy decision
    THIRD_COUNTRY = "third-country"  # needs an Art. 46/47 safeguard


class Safeguard(StrEnum):
    """Transfer tools the configuration may name (``transfer_safeguard``)."""

    STANDARD_CONTRACTUAL_CLAUSES = "standard-contractual-clauses"
    BINDING_CORPORATE_RULES = "binding-corporate-rules"
    EU_US_DATA_PRIVACY_FRAMEWORK = "eu-us-data-privacy-framework"
    CODE_OF_CONDUCT = "code-of-conduct"
    CERTIFICATION = "certification"


SAFEGUARD_BASIS: dict[Safeguard, str] = {
    Safeguard.STANDARD_CONTRACTUAL_CLAUSES:
        "standard contractual clauses (GDPR Art. 46(2)(c))",
    Safeguard.BINDING_CORPORATE_RULES: "binding corporate rules (GDPR Art. 47)",
    Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK:
        "EU-US Data Privacy Framework (GDPR Art. 45, adequacy decision of 10 July 2023)",
    Safeguard.CODE_OF_CONDUCT: "approved code of conduct (GDPR Art. 46(2)(e))",
    Safeguard.CERTIFICATION: "approved certification mechanism (GDPR Art. 46(2)(f))",
}

# ISO 3166-1 alpha-2, all 249 assigned codes
_ISO_CODES = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN
BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL
GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM
JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD
SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_COUNTRIES = frozenset(_ISO_CODES.split())
# codes people write that ISO spells differently
COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}

_EU_CODES = "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE"
EU_COUNTRIES = frozenset(_EU_CODES.split())
# parts of EU member states that ISO codes separately: Åland (FI) and the French
# outermost regions (Guadeloupe, French Guiana, Martinique, Réunion, Mayotte, Saint-Martin)
EU_TERRITORIES = frozenset({"AX", "GP", "GF", "MQ", "RE", "YT", "MF"})
EEA_COUNTRIES = EU_COUNTRIES | EU_TERRITORIES | {"IS", "LI", "NO"}
# European Commission adequacy decisions (GDPR Art. 45). Canada: commercial
# organisations under PIPEDA only.
ADEQUACY_COUNTRIES = frozenset({
    "AD", "AR", "CA", "FO", "GG", "IL", "IM", "JP", "JE", "NZ", "KR", "CH", "GB", "UY",
})
DPF_COUNTRY = "US"  # the Data Privacy Framework covers certified US organisations only

# well-known cloud regions -> country. AWS names first; Google Cloud, Azure, Scaleway and
# OVHcloud names that do not clash with them. Anything else: give the ISO country code.
CLOUD_REGIONS: dict[str, str] = {
    # AWS
    "us-east-1": "US", "us-east-2": "US", "us-west-1": "US", "us-west-2": "US",
    "us-gov-east-1": "US", "us-gov-west-1": "US",
    "ca-central-1": "CA", "ca-west-1": "CA", "mx-central-1": "MX", "sa-east-1": "BR",
    "eu-west-1": "IE", "eu-west-2": "GB", "eu-west-3": "FR", "eu-central-1": "DE",
    "eu-central-2": "CH", "eu-north-1": "SE", "eu-south-1": "IT", "eu-south-2": "ES",
    "eusc-de-east-1": "DE",  # AWS European Sovereign Cloud
    "af-south-1": "ZA", "il-central-1": "IL", "me-south-1": "BH", "me-central-1": "AE",
    "ap-east-1": "HK", "ap-east-2": "TW", "ap-south-1": "IN", "ap-south-2": "IN",
    "ap-northeast-1": "JP", "ap-northeast-2": "KR", "ap-northeast-3": "JP",
    "ap-southeast-1": "SG", "ap-southeast-2": "AU", "ap-southeast-3": "ID",
    "ap-southeast-4": "AU", "ap-southeast-5": "MY", "ap-southeast-6": "NZ",
    "ap-southeast-7": "TH", "cn-north-1": "CN", "cn-northwest-1": "CN",
    # Google Cloud
    "europe-west1": "BE", "europe-west2": "GB", "europe-west3": "DE", "europe-west4": "NL",
    "europe-west6": "CH", "europe-west8": "IT", "europe-west9": "FR", "europe-west10": "DE",
    "europe-west12": "IT", "europe-north1": "FI", "europe-north2": "SE",
    "europe-central2": "PL", "europe-southwest1": "ES",
    "us-central1": "US", "us-east1": "US", "us-east4": "US", "us-east5": "US",
    "us-south1": "US", "us-west1": "US", "us-west2": "US", "us-west3": "US", "us-west4": "US",
    "northamerica-northeast1": "CA", "northamerica-northeast2": "CA",
    "southamerica-east1": "BR", "asia-northeast1": "JP", "asia-northeast3": "KR",
    "asia-south1": "IN", "asia-southeast1": "SG", "australia-southeast1": "AU",
    "me-west1": "IL", "africa-south1": "ZA",
    # Azure
    "francecentral": "FR", "francesouth": "FR", "westeurope": "NL", "northeurope": "IE",
    "germanywestcentral": "DE", "germanynorth": "DE", "swedencentral": "SE",
    "norwayeast": "NO", "norwaywest": "NO", "switzerlandnorth": "CH",
    "switzerlandwest": "CH", "uksouth": "GB", "ukwest": "GB", "italynorth": "IT",
    "polandcentral": "PL", "spaincentral": "ES", "eastus": "US", "eastus2": "US",
    "westus": "US", "westus2": "US", "westus3": "US", "centralus": "US",
    "canadacentral": "CA", "canadaeast": "CA", "japaneast": "JP", "koreacentral": "KR",
    "centralindia": "IN", "southeastasia": "SG", "brazilsouth": "BR",
    "southafricanorth": "ZA", "uaenorth": "AE", "israelcentral": "IL",
    # Scaleway
    "fr-par": "FR", "nl-ams": "NL", "pl-waw": "PL",
    # OVHcloud
    "gra": "FR", "sbg": "FR", "rbx": "FR", "eu-west-par": "FR", "eu-south-mil": "IT",
    "waw": "PL", "bhs": "CA", "ca-east-tor": "CA",
}

ROLES = ("inbox", "vault", "proofs")
# host names that never leave the operator's own network
_PRIVATE_SUFFIXES = (".local", ".localdomain", ".internal", ".lan", ".home.arpa", ".svc",
                     ".cluster.local", ".localhost")

Where = Callable[[str], str]
"""Formats a key path for an error message: ``key -> "FILE:LINE: key"``."""


def country_of(region: str) -> str | None:
    """The ISO 3166 alpha-2 country of a cloud region name or of a country code; None when
    unknown (callers refuse it: we cannot tell where the data is)."""
    name = region.strip()
    if len(name) == 2 and name.isalpha():
        code = COUNTRY_ALIASES.get(name.upper(), name.upper())
        return code if code in ISO_COUNTRIES else None
    return CLOUD_REGIONS.get(name.lower())


def country_code(value: str) -> str | None:
    """An ISO 3166 alpha-2 code (``UK`` and ``EL`` accepted as GB and GR), else None."""
    name = value.strip()
    if len(name) != 2 or not name.isalpha():
        return None
    code = COUNTRY_ALIASES.get(name.upper(), name.upper())
    return code if code in ISO_COUNTRIES else None


def zone_of(country: str, safeguard: Safeguard | None = None) -> Zone:
    """EU/EEA, adequacy (the US only with the Data Privacy Framework), or third country."""
    if country in EEA_COUNTRIES:
        return Zone.EEA
    if country in ADEQUACY_COUNTRIES:
        return Zone.ADEQUACY
    if country == DPF_COUNTRY and safeguard is Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK:
        return Zone.ADEQUACY
    return Zone.THIRD_COUNTRY


def transfer_basis(zone: Zone | None, safeguard: Safeguard | None) -> str:
    """One phrase for the report: why this location is lawful (or that it is undeclared)."""
    if zone is None:
        return "not declared"
    if zone is Zone.EEA:
        return "within the EU/EEA (no transfer)"
    if safeguard is not None:
        return SAFEGUARD_BASIS[safeguard]
    if zone is Zone.ADEQUACY:
        return "adequacy decision (GDPR Art. 45)"
    return "no safeguard"  # never reached for a validated configuration


def parse_safeguard(value: object, *, ref: str) -> Safeguard | None:
    """``transfer_safeguard`` -> Safeguard (None when not given); ``ref`` is the formatted
    key for the error message."""
    if value is None:
        return None
    names = ", ".join(s.value for s in Safeguard)
    if not isinstance(value, str):
        raise ConfigError(f"{ref}: must be one of {names}, got {value!r}")
    try:
        return Safeguard(value.strip().lower())
    except ValueError:
        raise ConfigError(f"{ref}: unknown transfer safeguard {value!r} "
                          f"(one of {names})") from None


def check_transfer(
    *, what: str, country: str, safeguard: Safeguard | None, ref: str, safeguard_ref: str,
    fix: str, region: str | None = None,
) -> Zone:
    """The zone of ``country``; raises ConfigError when it needs a safeguard and has none,
    or when the safeguard named does not apply there (the DPF outside the US). ``what``
    names the store or processor, ``ref``/``safeguard_ref`` are the formatted keys,
    ``fix`` says which key would hold the safeguard; ``region`` is shown beside the
    country when it was given as a region name."""
    place = country if region is None or region.upper() == country else f"{region} ({country})"
    if safeguard is Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK and country != DPF_COUNTRY:
        raise ConfigError(
            f"{safeguard_ref}: {safeguard.value} only covers certified organisations in "
            f"the United States, and {what} is in {place} (name another safeguard, e.g. "
            f"{Safeguard.STANDARD_CONTRACTUAL_CLAUSES.value})"
        )
    zone = zone_of(country, safeguard)
    if zone is Zone.THIRD_COUNTRY and safeguard is None:
        us = (f", or {Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK.value} for a certified "
              "US organisation" if country == DPF_COUNTRY else "")
        raise ConfigError(
            f"{ref}: {what} is in {place}, outside the EU/EEA and the adequacy list: "
            f"refused unless {fix} names its transfer safeguard "
            f"({Safeguard.STANDARD_CONTRACTUAL_CLAUSES.value}, "
            f"{Safeguard.BINDING_CORPORATE_RULES.value}{us}; see docs/residency.md)"
        )
    return zone


@dataclass(frozen=True)
class Placement:
    """Where one store is. ``name`` is its role (inbox, vault, proofs); ``region``,
    ``country`` and ``zone`` are None when the configuration does not say."""

    name: str
    location: str
    region: str | None
    country: str | None
    zone: Zone | None
    safeguard: Safeguard | None
    declared_by: str | None = None  # the config key that gave the region

    def __post_init__(self) -> None:
        if self.name not in ROLES:
            raise ValueError(f"store role must be one of {', '.join(ROLES)}")
        if (self.country is None) != (self.zone is None):
            raise ValueError("country and zone are given together")


@dataclass(frozen=True)
class Processor:
    """A processor (e.g. an outsourced contact centre) acting for ``controller``."""

    name: str
    country: str
    zone: Zone
    safeguard: Safeguard | None
    controller: str

    def __post_init__(self) -> None:
        if self.zone is Zone.THIRD_COUNTRY and self.safeguard is None:
            raise ValueError("a processor in a third country needs a transfer safeguard")


@dataclass(frozen=True)
class Controller:
    """A controller the recordings are kept for, its processor (None: in-house), and the
    inboxes its recordings arrive in (empty: every inbox no other controller names, and
    files given to ``retentiond ingest``)."""

    name: str
    processor: Processor | None = None
    inboxes: tuple[str, ...] = ()


_SIMPLE_KEY = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def key_path(*parts: str | int) -> str:
    """A config key path as messages show it: ``residency.stores.vault.region``,
    ``residency.stores["s3://backup/"].region``, ``controllers[0].processor.country``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and set(part.lower()) <= _SIMPLE_KEY:
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def _plain_where(key: str) -> str:
    return key


@dataclass(frozen=True)
class StoreDeclaration:
    """One ``residency.stores`` entry. ``key`` is a role name or a resolved location;
    ``written`` is the key as the file spells it (for messages)."""

    key: str
    written: str
    region: str | None = None
    safeguard: Safeguard | None = None

    @property
    def region_key(self) -> str:
        return key_path("residency", "stores", self.written, "region")

    @property
    def safeguard_key(self) -> str:
        return key_path("residency", "stores", self.written, "transfer_safeguard")


@dataclass(frozen=True)
class ResidencyConfig:
    """The ``residency`` section. ``declared``: the section exists, so every store must
    have a known location (stores nobody declared are refused, not reported). ``where``
    formats a key path for messages (``FILE:LINE: key``)."""

    declared: bool = False
    local_country: str | None = None
    stores: tuple[StoreDeclaration, ...] = ()
    where: Where = field(default=_plain_where, compare=False, repr=False)


def _endpoint_host(url: str) -> str:
    """The host name of an S3 endpoint URL (or of a bare ``host:port``), lowercase."""
    return (urlparse(url if "://" in url else f"//{url}").hostname or "").lower()


def is_private_endpoint(url: str | None) -> bool:
    """An S3 endpoint on the operator's own network (loopback, private addresses,
    in-cluster or single-label names): its region name says nothing about where it is."""
    if not url:
        return False
    host = _endpoint_host(url)
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_PRIVATE_SUFFIXES)
    return ip.is_private or ip.is_loopback or ip.is_link_local


def _store_declaration(
    res: ResidencyConfig, role: str, location: str,
) -> StoreDeclaration | None:
    by_key = {d.key: d for d in res.stores}
    return by_key.get(location) or by_key.get(role)


def place_store(
    *, role: str, location: str, res: ResidencyConfig, s3_region: str | None,
    s3_endpoint: str | None,
) -> Placement:
    """Where one store is, checked. Order: its ``residency.stores`` entry (by location,
    then by role); a local folder, or a bucket on a private S3 endpoint, is in
    ``residency.local_country``; a bucket on AWS or a public endpoint is in ``s3.region``.
    Raises ConfigError (see module doc). Without a ``residency`` section (configs older
    than this check) a store with no location, or whose ``s3.region`` is not a known
    region, is reported as not declared instead of refused."""
    what = f"{role} {location}"
    decl = _store_declaration(res, role, location) or StoreDeclaration(location, location)
    local = not location.startswith("s3://") or is_private_endpoint(s3_endpoint)
    region: str | None
    if decl.region is not None:
        region, key = decl.region, decl.region_key
    elif local:
        region, key = res.local_country, "residency.local_country"
    else:
        region, key = s3_region, "s3.region"
    if region is None:
        if not res.declared:
            return Placement(role, location, None, None, None, decl.safeguard)
        if local and location.startswith("s3://"):
            why = f"a bucket on {s3_endpoint}, a server on your own network"
        else:
            why = "a local folder" if local else "a bucket and s3.region is not set"
        fix = "residency.local_country" if local else f"{decl.region_key} (or s3.region)"
        raise ConfigError(
            f"{res.where('residency')}: {what} ({why}) has no declared location: set {fix} "
            "to the ISO 3166 country code where it is (e.g. FR) or its cloud region"
        )
    country = country_of(region)
    if country is None:
        if not res.declared and decl.region is None:
            # a legacy config's s3.region we cannot place: reported; a region written in a
            # residency.stores entry is always checked
            return Placement(role, location, region, None, None, decl.safeguard)
        raise ConfigError(
            f"{res.where(key)}: unknown region {region!r} for {what}: give the ISO 3166 "
            f"country code where the data is stored (e.g. FR, DE, US) in {decl.region_key}"
        )
    zone = check_transfer(
        what=what, country=country, safeguard=decl.safeguard, ref=res.where(key),
        safeguard_ref=res.where(decl.safeguard_key), fix=decl.safeguard_key, region=region,
    )
    return Placement(role, location, region, country, zone, decl.safeguard, key)


def place_stores(
    *, inbox: Sequence[str], vault: str, proofs: str, res: ResidencyConfig,
    s3_region: str | None, s3_endpoint: str | None,
) -> tuple[Placement, ...]:
    """Every inbox, the vault and the proof log, placed and checked (:func:`place_store`)."""
    return tuple(
        place_store(role=role, location=loc, res=res, s3_region=s3_region,
                    s3_endpoint=s3_endpoint)
        for role, loc in (*(("inbox", i) for i in inbox), ("vault", vault),
                          ("proofs", proofs))
    )


def check_processor(
    *, name: str, country: str, safeguard: Safeguard | None, controller: str, ref: str,
    safeguard_ref: str, fix: str,
) -> Processor:
    """A processor, checked: in a third country it needs a transfer safeguard."""
    code = country_code(country)
    if code is None:
        raise ConfigError(f"{ref}: {country!r} is not an ISO 3166 alpha-2 country code "
                          "(e.g. FR, MA, TN)")
    zone = check_transfer(what=f"processor {name!r} (for {controller!r})", country=code,
                          safeguard=safeguard, ref=ref, safeguard_ref=safeguard_ref, fix=fix)
    return Processor(name=name, country=code, zone=zone, safeguard=safeguard,
                     controller=controller)


def _within(source: str, inbox: str) -> bool:
    if inbox.startswith("s3://"):
        return source.startswith(inbox)  # normalised: ends with "/"
    base = inbox.rstrip("/")
    return source == base or source.startswith(base + "/")


def controller_for(
    controllers: Sequence[Controller], source_url: str,
) -> tuple[str | None, str | None]:
    """(controller name, processor name) for a recording that arrived from ``source_url``
    (a path or an ``s3://`` URL, as the catalog's ``source``): the controller whose inbox
    holds it (the longest match), else the one declared without inboxes, else (None, None).
    """
    source = source_url[len("file://"):] if source_url.startswith("file://") else source_url
    best: Controller | None = None
    best_len = -1
    default: Controller | None = None
    for c in controllers:
        if not c.inboxes:
            default = c
        for inbox in c.inboxes:
            if _within(source, inbox) and len(inbox) > best_len:
                best, best_len = c, len(inbox)
    chosen = best or default
    if chosen is None:
        return None, None
    return chosen.name, chosen.processor.name if chosen.processor else None


class ResidencySource(Protocol):
    """What :func:`residency_rows` needs (``retentiond.settings.Settings``)."""

    @property
    def controllers(self) -> tuple[Controller, ...]: ...

    def placements(self) -> tuple[Placement, ...]: ...


def residency_rows(settings: ResidencySource) -> list[dict[str, object]]:
    """For the DPO report: one row per store (``kind: store``: role, location, region,
    country, zone, safeguard, basis, declared_by) then one per controller
    (``kind: processor``: controller, processor, country, zone, safeguard, basis,
    inboxes, default; processor None = in-house; ``default`` true for the controller of
    every inbox no other one names). JSON-serialisable; None where undeclared."""
    rows: list[dict[str, object]] = []
    for p in settings.placements():
        rows.append({
            "kind": "store", "role": p.name, "location": p.location, "region": p.region,
            "country": p.country, "zone": p.zone.value if p.zone else None,
            "safeguard": p.safeguard.value if p.safeguard else None,
            "basis": transfer_basis(p.zone, p.safeguard), "declared_by": p.declared_by,
        })
    for c in settings.controllers:
        proc = c.processor
        rows.append({
            "kind": "processor", "controller": c.name,
            "processor": proc.name if proc else None,
            "country": proc.country if proc else None,
            "zone": proc.zone.value if proc else None,
            "safeguard": proc.safeguard.value if proc and proc.safeguard else None,
            "basis": (transfer_basis(proc.zone, proc.safeguard) if proc
                      else "in-house (no processor named)"),
            "inboxes": list(c.inboxes), "default": not c.inboxes,
        })
    return rows


# -- what the store says ----------------------------------------------------------------------


class LocationStatus(StrEnum):
    """How a store's own answer to "where is this bucket?" compares with the declaration."""

    CONFIRMED = "confirmed"  # in the declared country
    DIFFERS = "differs"  # another country, but no transfer the declaration does not cover
    TRANSFER = "transfer"  # a country whose transfer the declaration does not cover
    UNKNOWN_REGION = "unknown-region"  # a region name retentiond cannot place
    UNVERIFIED = "unverified"  # the store did not answer (access denied, not implemented)
    NOT_CHECKED = "not-checked"  # a folder, or a server on your own network


@dataclass(frozen=True)
class LocationCheck:
    """The store's answer for one placed store, and what it means."""

    role: str
    location: str
    status: LocationStatus
    answered: str | None  # the region the store gave
    detail: str

    @property
    def summary(self) -> str:
        return f"{self.status.value}: {self.detail}"


# providers whose GetBucketLocation names the region the bucket really is in (AWS when
# no endpoint is set): a self-hosted server (MinIO, Ceph RGW), even on a public address,
# answers whatever name it was configured with (``us-east-1`` is MinIO's default, RGW
# answers its zonegroup's), which says nothing about where it is
PROVIDER_DOMAINS = ("amazonaws.com", "amazonaws.com.cn", "scw.cloud", "cloud.ovh.net",
                    "storage.googleapis.com")


def _on(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def is_aws_endpoint(s3_endpoint: str | None) -> bool:
    """AWS itself: no endpoint set, or an ``amazonaws.com`` one."""
    if not s3_endpoint:
        return True
    host = _endpoint_host(s3_endpoint)
    return _on(host, "amazonaws.com") or _on(host, "amazonaws.com.cn")


def should_ask(placement: Placement, *, s3_endpoint: str | None) -> bool:
    """Ask the store where it is only for a bucket on AWS (no endpoint set) or on a
    provider in PROVIDER_DOMAINS, whose region names mean places."""
    if not placement.location.startswith("s3://"):
        return False
    if not s3_endpoint:
        return True
    host = _endpoint_host(s3_endpoint)
    return any(_on(host, d) for d in PROVIDER_DOMAINS)


def compare_location(placement: Placement, answered: str) -> LocationCheck:
    """The store says its bucket is in region ``answered``: the same country as declared
    (confirmed), another one that needs no transfer safeguard beyond the declared one
    (differs: the declaration is wrong, nothing unlawful follows), or a country whose
    transfer the declared safeguard does not cover (transfer: the recordings must not go
    there). GDPR Art. 44: a transfer needs its chapter V conditions "including for onward
    transfers"; CNIL on outsourced processing: "la problematique d'un possible flux
    transfrontiere [...] necessitera aussi une attention toute particuliere"
    (context/001_aef597fe755596ca.txt)."""
    p = placement
    country = country_of(answered)
    if country is None:
        return LocationCheck(p.name, p.location, LocationStatus.UNKNOWN_REGION, answered,
                             f"the store answers region {answered!r}, which retentiond "
                             "cannot place; declare the store by ISO country code")
    declared = f"{p.region} ({p.country})" if p.region != p.country else str(p.country)
    if country == p.country:
        return LocationCheck(p.name, p.location, LocationStatus.CONFIRMED, answered,
                             f"the store answers {answered} ({country}), as declared")
    fix = f"correct {p.declared_by or 'the declaration'}" if p.declared_by != "s3.region" \
        else f"declare this store's own region in residency.stores.{p.name}.region"
    zone = zone_of(country, p.safeguard)
    if zone is Zone.THIRD_COUNTRY and (
            p.safeguard is None or p.safeguard is Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK):
        covered = f"{p.safeguard.value} does not cover" if p.safeguard else \
            "no transfer safeguard covers"
        return LocationCheck(
            p.name, p.location, LocationStatus.TRANSFER, answered,
            f"the store answers {answered} ({country}, third country), not {declared} as "
            f"declared: a transfer outside the EU/EEA that {covered}; move the bucket, or "
            f"{fix} and name the safeguard (docs/residency.md)")
    return LocationCheck(p.name, p.location, LocationStatus.DIFFERS, answered,
                         f"the store answers {answered} ({country}, {zone.value}), not "
                         f"{declared} as declared; {fix}")
