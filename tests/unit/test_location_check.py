"""``compare_location``: what a store's own answer (GetBucketLocation) means against the
declared location, and ``should_ask``: which stores are asked at all."""

from __future__ import annotations

import pytest

from retentiond.core.residency import (
    LocationStatus,
    Placement,
    Safeguard,
    Zone,
    compare_location,
    should_ask,
)


def vault(region: str, country: str, zone: Zone, safeguard: Safeguard | None = None,
          ) -> Placement:
    return Placement("vault", "s3://calls/v/", region, country, zone, safeguard,
                     "residency.stores.vault.region")


FR = vault("eu-west-3", "FR", Zone.EEA)
US_SCC = vault("us-east-1", "US", Zone.THIRD_COUNTRY, Safeguard.STANDARD_CONTRACTUAL_CLAUSES)
US_DPF = vault("us-east-1", "US", Zone.ADEQUACY, Safeguard.EU_US_DATA_PRIVACY_FRAMEWORK)


@pytest.mark.parametrize("placement, answered, status", [
    pytest.param(FR, "eu-west-3", LocationStatus.CONFIRMED, id="as-declared"),
    pytest.param(vault("FR", "FR", Zone.EEA), "fr-par", LocationStatus.CONFIRMED,
                 id="iso-code-declared-scaleway-answers"),
    pytest.param(FR, "eu-central-1", LocationStatus.DIFFERS, id="germany-instead-of-france"),
    pytest.param(FR, "eu-west-2", LocationStatus.DIFFERS, id="uk-adequacy"),
    pytest.param(FR, "us-east-1", LocationStatus.TRANSFER, id="us-without-safeguard"),
    pytest.param(FR, "ap-south-1", LocationStatus.TRANSFER, id="india-without-safeguard"),
    pytest.param(US_SCC, "ap-south-1", LocationStatus.DIFFERS,
                 id="clauses-cover-another-third-country"),
    pytest.param(US_DPF, "sa-east-1", LocationStatus.TRANSFER,
                 id="dpf-covers-only-the-us"),
    pytest.param(US_DPF, "us-west-2", LocationStatus.CONFIRMED, id="dpf-us-region"),
    pytest.param(US_DPF, "eu-central-1", LocationStatus.DIFFERS, id="dpf-declared-but-in-eea"),
    pytest.param(FR, "mars-north-1", LocationStatus.UNKNOWN_REGION, id="unknown-name"),
])
def test_compare_location(placement, answered, status):
    check = compare_location(placement, answered)
    assert check.status is status
    assert check.answered == answered and answered in check.detail
    if status in (LocationStatus.DIFFERS, LocationStatus.TRANSFER):
        assert "residency.stores.vault.region" in check.detail  # what to correct
    if status is LocationStatus.TRANSFER:
        assert "move the bucket" in check.detail and "safeguard" in check.detail


@pytest.mark.parametrize("location, endpoint, asked", [
    pytest.param("s3://calls/v/", None, True, id="aws"),
    pytest.param("s3://calls/v/", "https://s3.eu-west-3.amazonaws.com", True,
                 id="aws-endpoint"),
    pytest.param("s3://calls/v/", "https://s3.fr-par.scw.cloud", True, id="scaleway"),
    pytest.param("s3://calls/v/", "https://s3.gra.io.cloud.ovh.net", True, id="ovhcloud"),
    pytest.param("s3://calls/v/", "https://minio.example.fr", False,
                 id="self-hosted-public-minio"),
    pytest.param("s3://calls/v/", "https://evilamazonaws.com", False, id="lookalike"),
    pytest.param("s3://calls/v/", "http://127.0.0.1:9000", False, id="loopback"),
    pytest.param("s3://calls/v/", "http://minio.storage.svc:9000", False, id="in-cluster"),
    pytest.param("s3://calls/v/", "http://10.0.0.5:9000", False, id="private-address"),
    pytest.param("/srv/vault", None, False, id="folder"),
])
def test_which_stores_are_asked(location, endpoint, asked):
    p = Placement("vault", location, "eu-west-3", "FR", Zone.EEA, None, "s3.region")
    assert should_ask(p, s3_endpoint=endpoint) is asked
