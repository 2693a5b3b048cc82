"""Ask each bucket where it really is (S3 GetBucketLocation) and compare with the
configuration's residency declaration (``core.residency.compare_location``).

The configuration says where each store is; a wrong declaration (a vault bucket created
in ``us-east-1`` by a console's default while the file says ``eu-west-3``) would make
every residency check and the DPO's report wrong without anyone noticing. So the daemon
asks at start-up (``run`` and ``run --once``) and the compliance report asks each time:

- a bucket in a country whose transfer the declaration does not cover stops the daemon
  before it stores anything there (exit 2, the message says what the store answered and
  what to fix);
- a bucket in another country that needs no further safeguard, a region name retentiond
  cannot place, or a store that does not answer (access denied, not implemented) is a
  warning, and the report shows it per store.

Only buckets on AWS or another public endpoint are asked: a server on your own network
answers the region name it was configured with (docs/residency.md).
"""

from __future__ import annotations

import logging

from retentiond.adapters.s3 import S3Client, bucket_region, make_s3_client, parse_s3_url
from retentiond.core.residency import (
    LocationCheck,
    LocationStatus,
    compare_location,
    is_aws_endpoint,
    should_ask,
)
from retentiond.errors import ConfigError, StorageError
from retentiond.service.wiring import App
from retentiond.settings import Settings

logger = logging.getLogger(__name__)

_WARNING_EVENTS = {
    LocationStatus.DIFFERS: "residency.location_differs",
    LocationStatus.UNKNOWN_REGION: "residency.location_unknown",
    LocationStatus.UNVERIFIED: "residency.location_unverified",
}


# one question per bucket at start-up: fail fast (a blackholed endpoint costs at most
# about 2 x (5 + 10) s per bucket, never the daemon's own 5 attempts of 65 s)
_ASK_ATTEMPTS, _ASK_CONNECT_TIMEOUT, _ASK_READ_TIMEOUT = 2, 5.0, 10.0


def _asking_client(settings: Settings) -> S3Client:
    s3 = settings.s3
    return make_s3_client(
        endpoint_url=s3.get("endpoint_url"), region=s3.get("region"),
        addressing_style=s3.get("addressing_style", "auto"), profile=s3.get("profile"),
        max_attempts=_ASK_ATTEMPTS, connect_timeout=_ASK_CONNECT_TIMEOUT,
        read_timeout=_ASK_READ_TIMEOUT)


def check_locations(app: App) -> list[LocationCheck]:
    """One check per placed store (every inbox, the vault, the proof log), in the order
    of ``Settings.placements``. Never raises for a store that does not answer."""
    settings = app.settings
    endpoint = settings.s3.get("endpoint_url")
    checks: list[LocationCheck] = []
    client = None
    asked: dict[str, str | StorageError] = {}  # bucket -> answer (a bucket asked once)
    for p in settings.placements():
        if not should_ask(p, s3_endpoint=endpoint):
            why = ("a local folder" if not p.location.startswith("s3://") else
                   f"a self-hosted or unlisted S3 server ({endpoint}): the region name it "
                   "answers is its own configuration, not a place")
            checks.append(LocationCheck(p.name, p.location, LocationStatus.NOT_CHECKED,
                                        None, why))
            continue
        if p.country is None:
            checks.append(LocationCheck(p.name, p.location, LocationStatus.NOT_CHECKED,
                                        None, "no location declared to compare with"))
            continue
        bucket = parse_s3_url(p.location)[0]
        if bucket not in asked:
            try:
                client = client or _asking_client(settings)
                asked[bucket] = bucket_region(client, bucket,
                                              aws=is_aws_endpoint(endpoint))
            except StorageError as e:
                asked[bucket] = e
            except Exception as e:  # noqa: BLE001 (a store's odd answer never stops a start)
                asked[bucket] = StorageError(f"s3://{bucket}: GetBucketLocation: "
                                             f"{type(e).__name__}")
        answer = asked[bucket]
        if isinstance(answer, StorageError):
            checks.append(LocationCheck(p.name, p.location, LocationStatus.UNVERIFIED, None,
                                        f"the store did not say where it is: {answer}"))
        else:
            checks.append(compare_location(p, answer))
    return checks


def enforce_locations(app: App) -> list[LocationCheck]:
    """``check_locations`` at start-up: raise ConfigError for a store in a country whose
    transfer the declaration does not cover; log the other disagreements as warnings."""
    checks = check_locations(app)
    for c in checks:
        if c.status is LocationStatus.TRANSFER:
            raise ConfigError(f"residency: {c.role} {c.location}: {c.detail}")
    for c in checks:
        event = _WARNING_EVENTS.get(c.status)
        if event is not None:
            logger.warning("residency: %s %s: %s", c.role, c.location, c.detail,
                           extra={"event": event})
    return checks
