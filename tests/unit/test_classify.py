from datetime import UTC, datetime, timedelta

import pytest

from retentiond.core.classify import Overrides, classify
from retentiond.core.model import QUARANTINE
from retentiond.core.policy import parse_policy
from retentiond.core.sidecar import Sidecar

POLICY = parse_policy(
    """
version: 1
name: test
purposes:
  quality: {legal_basis: legitimate-interests, retention: P6M}
  training: {legal_basis: legitimate-interests, retention: P6M, media: [audio, screen]}
  banking-evidence: {legal_basis: legal-obligation, retention: P5Y, min_retention: P5Y}
classify:
  - match: {prefix: "banking/"}
    purpose: banking-evidence
""",
    filename="test.yaml",
)
NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
MTIME = NOW - timedelta(minutes=5)


@pytest.mark.parametrize(
    ("relpath", "sidecar", "overrides", "purpose", "reason_part"),
    [
        pytest.param("a.wav", Sidecar(purpose="quality"), Overrides(), "quality", None,
                     id="sidecar-purpose"),
        pytest.param("banking/a.wav", None, Overrides(), "banking-evidence", None, id="rule"),
        pytest.param("banking/a.wav", Sidecar(purpose="quality"), Overrides(), "quality", None,
                     id="sidecar-wins-over-rule"),
        pytest.param("a.wav", Sidecar(purpose="quality"), Overrides(purpose="training"),
                     "training", None, id="flag-wins-over-sidecar"),
        pytest.param("a.wav", None, Overrides(), QUARANTINE, "no purpose", id="unclassifiable"),
        pytest.param("a.wav", Sidecar(purpose="marketing"), Overrides(), QUARANTINE,
                     "unknown purpose 'marketing'", id="unknown-purpose"),
        pytest.param("a.mp4", Sidecar(purpose="quality", media="screen"), Overrides(), QUARANTINE,
                     "media 'screen' not allowed for purpose 'quality'", id="screen-outside-training"),
        pytest.param("a.mp4", Sidecar(purpose="training", media="screen"), Overrides(),
                     "training", None, id="screen-for-training"),
        pytest.param("a.mp4", Sidecar(purpose="quality"), Overrides(), QUARANTINE,
                     "media 'video'", id="video-by-extension"),
        pytest.param("a.bin", Sidecar(purpose="quality"), Overrides(), QUARANTINE,
                     "unknown media", id="unknown-extension"),
        pytest.param("a.bin", Sidecar(purpose="quality", media="audio"), Overrides(), "quality",
                     None, id="sidecar-media-wins"),
        pytest.param("a.wav", Sidecar(purpose="quality", recorded_at=NOW + timedelta(days=3)),
                     Overrides(), QUARANTINE, "future", id="future-recording"),
    ],
)
def test_classification(relpath, sidecar, overrides, purpose, reason_part):
    c = classify(policy=POLICY, relpath=relpath, mtime=MTIME, now=NOW, sidecar=sidecar,
                 overrides=overrides)
    assert c.purpose == purpose
    if reason_part is None:
        assert c.quarantine_reason is None
    else:
        assert reason_part in c.quarantine_reason


def test_sidecar_error_quarantines_with_its_message():
    c = classify(policy=POLICY, relpath="banking/a.wav", mtime=MTIME, now=NOW, sidecar=None,
                 sidecar_error="a.wav.json:3: malformed JSON")
    assert c.purpose == QUARANTINE and "a.wav.json:3" in c.quarantine_reason


def test_defaults_legal_basis_and_recorded_at():
    c = classify(policy=POLICY, relpath="banking/a.wav", mtime=MTIME, now=NOW, sidecar=None)
    assert c.legal_basis == "legal-obligation"
    assert c.recorded_at == MTIME
