from datetime import UTC, datetime

import pytest

from retentiond.core.sidecar import parse_sidecar
from retentiond.errors import InputError


def test_full_sidecar_parses():
    sc = parse_sidecar(
        b'{"purpose": "quality", "legal_basis": "consent", "recorded_at": '
        b'"2026-01-02T10:00:00+01:00", "call_id": "c-1", "subject": "+33 6 12 34 56 78", '
        b'"agent": "a7", "media": "audio", "objection": false, "notes": "ok", "x-vendor": 3}',
        filename="in/a.wav.json",
    )
    assert sc.purpose == "quality"
    assert sc.recorded_at == datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
    assert sc.objection is False
    assert "+33" not in repr(sc) and "ok" not in repr(sc)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b'{"purpose": "quality",\n "objecton": true}', "a.json:2: objecton: unknown field",
                     id="typo-field-names-line"),
        pytest.param(b'{"purpose": "quality",\n "media": "fax"}', "a.json:2: media: unknown media",
                     id="unknown-media"),
        pytest.param(b'{\n"legal_basis": "because"}', "a.json:2: legal_basis: unknown legal basis",
                     id="unknown-basis"),
        pytest.param(b'{"recorded_at": "2026-01-02T10:00:00"}', "has no UTC offset", id="naive-time"),
        pytest.param(b'{"recorded_at": "yesterday"}', "not an ISO 8601", id="bad-time"),
        pytest.param(b'{"objection": "yes"}', "objection: must be true or false", id="bool-as-text"),
        pytest.param(b'{"purpose": 3}', "purpose: must be a string", id="number"),
        pytest.param(b'{"purpose": "quality",\n\n  "agent": }', "a.json:3: malformed JSON",
                     id="malformed-json-line"),
        pytest.param(b'["quality"]', "must be a JSON object", id="not-object"),
        pytest.param(b'{"objection": true,\n "objection": false}', "a.json:1: objection: given twice",
                     id="duplicate-key"),
        pytest.param(b'\xff\xfe', "not UTF-8", id="not-utf8"),
        pytest.param(b'{"purpose": "   "}', "must not be empty", id="blank"),
        pytest.param(b'{"notes": "' + b"x" * 70000 + b'"}', "limit", id="too-big"),
    ],
)
def test_bad_sidecars_name_file_line_field(data, message):
    with pytest.raises(InputError) as e:
        parse_sidecar(data, filename="a.json")
    assert message in str(e.value)
    assert e.value.exit_code == 4


# -- the same fields as S3 object metadata ---------------------------------------------------


def test_metadata_sidecar_fields_and_validation() -> None:
    from retentiond.core.sidecar import sidecar_from_metadata

    assert sidecar_from_metadata({"other": "x", "content-kind": "y"}) is None
    sc = sidecar_from_metadata({
        "retentiond-purpose": "quality", "retentiond-call-id": "c-1",
        "retentiond-recorded-at": "2026-01-02T03:04:05+01:00",
        "retentiond-objection": "TRUE", "retentiond-subject": "+33612345678",
        "retentiond-notes": "=?UTF-8?B?cmFwcGVsw6kgbGUgY2xpZW50?=", "unrelated": "ignored",
    })
    assert sc is not None
    assert (sc.purpose, sc.call_id, sc.objection) == ("quality", "c-1", True)
    assert sc.recorded_at is not None and sc.recorded_at.isoformat() == "2026-01-02T02:04:05+00:00"
    assert sc.notes == "rappelé le client"
    assert "+336" not in repr(sc)


@pytest.mark.parametrize(("meta", "message"), [
    ({"retentiond-objection": "yes"}, "x-amz-meta-retentiond-objection: must be true or false"),
    ({"retentiond-media": "fax"}, "x-amz-meta-retentiond-media: unknown media"),
    ({"retentiond-purpos": "quality"}, "x-amz-meta-retentiond-purpos: unknown field"),
    ({"retentiond-recorded-at": "2026-01-02"}, "x-amz-meta-retentiond-recorded-at: recorded_at"),
    ({"retentiond-legal-basis": "whim"}, "x-amz-meta-retentiond-legal-basis: unknown legal basis"),
])
def test_metadata_sidecar_errors_name_the_metadata_key(meta: dict[str, str], message: str) -> None:
    from retentiond.core.sidecar import sidecar_from_metadata

    with pytest.raises(InputError) as e:
        sidecar_from_metadata(meta)
    assert str(e.value).startswith("metadata: ")
    assert message in str(e.value)
