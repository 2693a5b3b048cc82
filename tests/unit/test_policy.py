"""Policy parsing: every error names file, line and key; canonical hash; the shipped pack."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from retentiond.core.canonical import sha256_hex
from retentiond.core.duration import Duration
from retentiond.core.policy import (
    DEFAULT_QUARANTINE_RETENTION,
    ClassifyRule,
    Policy,
    Purpose,
    load_policy_dir,
    parse_policy,
    parse_policy_sources,
)
from retentiond.errors import InputError, PolicyError

REPO = Path(__file__).resolve().parents[2]
PACK_DIR = REPO / "policies"
FILE = "policies/p.yaml"

BASE = """\
version: 1
name: test-policy
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: P6M
"""


def parse(text: str) -> Policy:
    return parse_policy(textwrap.dedent(text), filename=FILE)


def purpose_doc(body: str) -> str:
    """BASE with the quality purpose's keys replaced by ``body`` (starts at line 5)."""
    return "version: 1\nname: test-policy\npurposes:\n  quality:\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


def rules_doc(rules: str) -> str:
    """BASE plus a training purpose and ``rules`` under ``classify:`` (rules start at line 12)."""
    return (
        BASE
        + "  training:\n    legal_basis: legitimate-interests\n    retention: P6M\n"
        + "    media: [audio, screen]\nclassify:\n"
        + textwrap.indent(textwrap.dedent(rules), "  ")
    )


# ----------------------------------------------------------------------------- errors

ERRORS = [
    # --- YAML level
    pytest.param("version: 1\nname: [oops\n", 3, None, "invalid YAML", id="yaml-syntax"),
    pytest.param("", 1, None, "empty file", id="empty-file"),
    pytest.param("# only a comment\n", 1, None, "empty file", id="comment-only-file"),
    pytest.param(BASE + "---\nversion: 1\n", 7, None, "expected a single document",
                 id="two-documents"),
    pytest.param("- version: 1\n", 1, None, "expected a mapping of policy keys",
                 id="top-level-list"),
    # --- duplicates: YAML would silently keep the last one
    pytest.param("version: 1\nname: a\nname: b\n", 3, "name",
                 "duplicate key (first at line 2)", id="duplicate-top-key"),
    pytest.param(BASE + "  quality:\n    legal_basis: consent\n    retention: P1Y\n", 7,
                 "purposes.quality", "duplicate key (first at line 4)", id="duplicate-purpose"),
    pytest.param(BASE + "    retention: P1Y\n", 7, "purposes.quality.retention",
                 "duplicate key (first at line 6)", id="duplicate-purpose-key"),
    pytest.param(BASE + "quarantine:\n  retention: P30D\n  retention: P10D\n", 9,
                 "quarantine.retention", "duplicate key (first at line 8)",
                 id="duplicate-quarantine-key"),
    pytest.param(rules_doc("- match: {prefix: a/, prefix: b/}\n  purpose: quality\n"), 12,
                 "classify[0].match.prefix", "duplicate key", id="duplicate-match-key"),
    # --- unknown keys at every level
    pytest.param(BASE + "purpose: x\n", 7, "purpose", "did you mean 'purposes'?",
                 id="unknown-top-key"),
    pytest.param(purpose_doc("legal_basis: consent\nretension: P6M\n"), 6,
                 "purposes.quality.retension", "did you mean 'retention'?",
                 id="unknown-purpose-key"),
    pytest.param(BASE + "quarantine:\n  keep: P30D\n", 8, "quarantine.keep", "unknown key",
                 id="unknown-quarantine-key"),
    pytest.param(rules_doc("- match: {prefix: a/}\n  purpose: quality\n  why: x\n"), 14,
                 "classify[0].why", "unknown key", id="unknown-rule-key"),
    pytest.param(rules_doc("- match: {suffix: .wav}\n  purpose: quality\n"), 12,
                 "classify[0].match.suffix", "unknown key (expected one of: glob, media, prefix)",
                 id="unknown-match-key"),
    pytest.param(BASE + "<<: {x: 1}\n", 7, None, "merge keys (<<) are not supported",
                 id="merge-key"),
    pytest.param(BASE.replace("  quality:", "  yes:"), 4, "purposes",
                 "keys must be strings, got a boolean", id="boolean-key"),
    # --- version and name
    pytest.param("name: x\npurposes: {}\n", 1, None, "missing required key 'version'",
                 id="missing-version"),
    pytest.param(BASE.replace("version: 1", "version: 2"), 1, "version",
                 "unsupported policy version 2", id="version-2"),
    pytest.param(BASE.replace("version: 1", "version: '1'"), 1, "version",
                 "expected an integer, got a string ('1')", id="version-string"),
    pytest.param(BASE.replace("version: 1", "version: 1.0"), 1, "version",
                 "expected an integer, got a number", id="version-float"),
    pytest.param(BASE.replace("name: test-policy\n", ""), 1, None,
                 "missing required key 'name'", id="missing-name"),
    pytest.param(BASE.replace("name: test-policy", "name: 12"), 2, "name",
                 "expected a string, got an integer (12)", id="name-int"),
    pytest.param(BASE.replace("name: test-policy", "name: 'a b'"), 2, "name",
                 "invalid policy name", id="name-with-space"),
    # --- purposes
    pytest.param("version: 1\nname: x\npurposes: {}\n", 3, "purposes",
                 "must define at least one purpose", id="empty-purposes"),
    pytest.param("version: 1\nname: x\npurposes:\n", 3, "purposes",
                 "must define at least one purpose", id="null-purposes"),
    pytest.param("version: 1\nname: x\n", None, None, "no purpose defined in policies/p.yaml",
                 id="no-purposes-key"),
    pytest.param("version: 1\nname: x\npurposes: [quality]\n", 3, "purposes",
                 "expected a mapping of purpose names, got a list", id="purposes-list"),
    pytest.param(BASE.replace("  quality:", "  quarantine:"), 4, "purposes.quarantine",
                 "reserved", id="reserved-quarantine"),
    pytest.param(BASE.replace("  quality:", "  Quality:"), 4, "purposes.Quality",
                 "invalid purpose name", id="purpose-name-uppercase"),
    pytest.param(BASE.replace("  quality:", "  quality: P6M\n  other:"), 4, "purposes.quality",
                 "expected a mapping, got a string ('P6M')", id="purpose-not-mapping"),
    pytest.param(purpose_doc("retention: P6M\n"), 4, "purposes.quality",
                 "missing required key 'legal_basis'", id="missing-legal-basis"),
    pytest.param(purpose_doc("legal_basis: consent\n"), 4, "purposes.quality",
                 "missing required key 'retention'", id="missing-retention"),
    # --- legal basis
    pytest.param(purpose_doc("legal_basis: legitimate-interest\nretention: P6M\n"), 5,
                 "purposes.quality.legal_basis",
                 "unknown legal basis 'legitimate-interest' (expected one of: consent, contract, "
                 "legal-obligation, legitimate-interests, public-task, vital-interests); "
                 "did you mean 'legitimate-interests'?", id="unknown-legal-basis"),
    pytest.param(purpose_doc("legal_basis: yes\nretention: P6M\n"), 5,
                 "purposes.quality.legal_basis", "expected a string, got a boolean (yes)",
                 id="legal-basis-bool"),
    pytest.param(purpose_doc("legal_basis: ''\nretention: P6M\n"), 5,
                 "purposes.quality.legal_basis", "must not be empty", id="legal-basis-empty"),
    # --- durations
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6X\n"), 6,
                 "purposes.quality.retention", "'P6X' is not an ISO 8601 duration",
                 id="bad-duration"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P0.5Y\n"), 6,
                 "purposes.quality.retention", "fractions are not allowed", id="fraction"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: -P6M\n"), 6,
                 "purposes.quality.retention", "signs are not allowed", id="negative"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P\n"), 6,
                 "purposes.quality.retention", "no component", id="empty-P"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: PT\n"), 6,
                 "purposes.quality.retention", "T must be followed", id="empty-PT"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: 6\n"), 6,
                 "purposes.quality.retention",
                 "expected an ISO 8601 duration such as P6M, got an integer (6)",
                 id="duration-int"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P100Y\n"), 6,
                 "purposes.quality.retention", "P100Y is out of bounds (PT30S .. P99Y)",
                 id="retention-too-long"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: PT10S\n"), 6,
                 "purposes.quality.retention", "PT10S is out of bounds (PT30S .. P99Y)",
                 id="retention-too-short"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P0D\n"), 6,
                 "purposes.quality.retention", "PT0S is out of bounds", id="retention-zero"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmin_retention: P100Y\n"), 7,
                 "purposes.quality.min_retention", "out of bounds", id="min-retention-bounds"),
    pytest.param(BASE + "quarantine:\n  retention: P100Y\n", 8, "quarantine.retention",
                 "out of bounds", id="quarantine-bounds"),
    pytest.param(BASE + "quarantine: {}\n", 7, "quarantine", "missing required key 'retention'",
                 id="quarantine-empty"),
    # --- contradictions
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmin_retention: P1Y\n"), 7,
                 "purposes.quality.min_retention",
                 "contradiction: min_retention P1Y can outlast retention P6M",
                 id="min-retention-longer"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P30D\nmin_retention: P1M\n"), 7,
                 "purposes.quality.min_retention", "contradiction",
                 id="min-retention-month-vs-30-days"),
    # --- media
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmedia: [audio, fax]\n"), 7,
                 "purposes.quality.media[1]",
                 "unknown medium 'fax' (allowed: audio, document, screen, video)",
                 id="unknown-medium"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmedia: []\n"), 7,
                 "purposes.quality.media", "at least one medium", id="empty-media"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmedia: audio\n"), 7,
                 "purposes.quality.media", "expected a list of media", id="media-not-list"),
    pytest.param(
        purpose_doc("legal_basis: consent\nretention: P6M\nmedia:\n  - audio\n  - audio\n"), 9,
        "purposes.quality.media[1]", "'audio' listed twice", id="media-duplicate",
    ),
    # --- sampling cap
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: 0\n"), 7,
                 "purposes.quality.max_sample_ratio", "0 is outside (0, 1]", id="ratio-zero"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: 1.5\n"),
                 7, "purposes.quality.max_sample_ratio", "1.5 is outside (0, 1]",
                 id="ratio-above-one"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: -0.1\n"),
                 7, "purposes.quality.max_sample_ratio", "outside (0, 1]", id="ratio-negative"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: .nan\n"),
                 7, "purposes.quality.max_sample_ratio", "outside (0, 1]", id="ratio-nan"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: .inf\n"),
                 7, "purposes.quality.max_sample_ratio", "outside (0, 1]", id="ratio-inf"),
    pytest.param(
        purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: 0.1234567\n"), 7,
        "purposes.quality.max_sample_ratio", "more than 6 decimal places", id="ratio-too-precise",
    ),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: 30%\n"),
                 7, "purposes.quality.max_sample_ratio", "expected a number in (0, 1]",
                 id="ratio-percent"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nmax_sample_ratio: true\n"),
                 7, "purposes.quality.max_sample_ratio", "got a boolean", id="ratio-bool"),
    # --- free text
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\ndescription: [a]\n"), 7,
                 "purposes.quality.description", "expected a string, got a list",
                 id="description-list"),
    pytest.param(purpose_doc("legal_basis: consent\nretention: P6M\nreference: 2019\n"), 7,
                 "purposes.quality.reference", "expected a string, got an integer",
                 id="reference-int"),
    # --- classify
    pytest.param(BASE + "classify: {prefix: a/}\n", 7, "classify", "expected a list of rules",
                 id="classify-not-list"),
    pytest.param(rules_doc("- match: {prefix: a/}\n  purpose: qualty\n"), 13,
                 "classify[0].purpose", "unknown purpose 'qualty' (defined: quality, training)",
                 id="rule-unknown-purpose"),
    pytest.param(rules_doc("- match: {prefix: a/}\n  purpose: quarantine\n"), 13,
                 "classify[0].purpose", "unknown purpose 'quarantine'", id="rule-to-quarantine"),
    pytest.param(rules_doc("- match: {}\n  purpose: quality\n"), 12, "classify[0].match",
                 "empty match", id="rule-empty-match"),
    pytest.param(rules_doc("- match: {prefix: ''}\n  purpose: quality\n"), 12,
                 "classify[0].match.prefix", "must not be empty", id="rule-empty-prefix"),
    pytest.param(rules_doc("- match: {prefix: /srv/in/}\n  purpose: quality\n"), 12,
                 "classify[0].match.prefix", "relative to the inbox root", id="rule-abs-prefix"),
    pytest.param(rules_doc("- match: {glob: 'a/*.wav'}\n  purpose: quality\n"), 12,
                 "classify[0].match.glob", "file name only", id="rule-glob-with-slash"),
    pytest.param(rules_doc("- match: {media: fax}\n  purpose: quality\n"), 12,
                 "classify[0].match.media", "unknown medium 'fax'", id="rule-unknown-media"),
    pytest.param(rules_doc("- match: {media: screen}\n  purpose: quality\n"), 12,
                 "classify[0].match.media",
                 "contradiction: sends 'screen' recordings to purpose 'quality', which allows "
                 "only: audio", id="rule-media-contradiction"),
    pytest.param(rules_doc("- match: {prefix: a/}\n"), 12, "classify[0]",
                 "missing required key 'purpose'", id="rule-missing-purpose"),
    pytest.param(rules_doc("- purpose: quality\n"), 12, "classify[0]",
                 "missing required key 'match'", id="rule-missing-match"),
    pytest.param(rules_doc("- match: {prefix: a/}\n  purpose: quality\n- quality\n"), 14,
                 "classify[1]", "expected a rule {match: ..., purpose: ...}, got a string",
                 id="rule-not-mapping"),
    pytest.param(rules_doc("- match: {prefix: a/}\n  purpose: quality\n"
                           "- match: {prefix: [b]}\n  purpose: quality\n"), 14,
                 "classify[1].match.prefix", "expected a string, got a list", id="rule-bad-prefix"),
    # --- tags: never constructed, always refused
    pytest.param(purpose_doc("legal_basis: !!python/name:os.system consent\nretention: P6M\n"),
                 5, "purposes.quality.legal_basis", "a value tagged", id="python-tag"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragment"), ERRORS)
def test_policy_errors(text: str, line: int | None, key: str | None, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, filename=FILE)
    err = info.value
    assert (err.file, err.line, err.key) == (FILE, line, key), str(err)
    where = FILE + (f":{line}" if line is not None else "") + ": " + (f"{key}: " if key else "")
    assert str(err).startswith(where), str(err)
    assert fragment in str(err), str(err)
    assert err.exit_code == 2


def test_error_message_format_example() -> None:
    text = purpose_doc("legal_basis: consent\nretention: P6X\n")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, filename="policies/cnil.yaml")
    assert str(info.value).startswith(
        "policies/cnil.yaml:6: purposes.quality.retention: 'P6X' is not an ISO 8601 duration"
    )


# ----------------------------------------------------------------------------- values


def test_defaults() -> None:
    policy = parse(BASE)
    quality = policy.purpose("quality")
    assert quality == Purpose(
        name="quality", legal_basis="legitimate-interests", retention=Duration(months=6)
    )
    assert quality.media == frozenset({"audio"})
    assert quality.min_retention is None
    assert quality.max_sample_ratio is None and quality.max_sample_ppm is None
    assert policy.quarantine_retention == DEFAULT_QUARANTINE_RETENTION == Duration(days=30)
    assert policy.rules == ()
    assert policy.version == 1
    assert policy.files == (FILE,)


def test_full_purpose() -> None:
    policy = parse(purpose_doc("""\
        description: |
          Quality monitoring.
        reference: CNIL, 6 mois
        legal_basis: legitimate-interests
        retention: P6M
        min_retention: P1M
        media: [screen, audio]
        max_sample_ratio: 0.30
    """))
    q = policy.purpose("quality")
    assert q.description == "Quality monitoring.\n"
    assert q.reference == "CNIL, 6 mois"
    assert q.min_retention == Duration(months=1)
    assert q.media == frozenset({"audio", "screen"})
    assert q.max_sample_ratio == 0.3
    assert q.max_sample_ppm == 300_000


@pytest.mark.parametrize(
    ("written", "ppm"),
    [
        pytest.param("1", 1_000_000, id="integer-one"),
        pytest.param("1.0", 1_000_000, id="float-one"),
        pytest.param(".3", 300_000, id="leading-dot"),
        pytest.param("0.000001", 1, id="one-ppm"),
        pytest.param("0.1234560", 123_456, id="trailing-zero"),
    ],
)
def test_sample_ratio_is_exact_ppm(written: str, ppm: int) -> None:
    text = purpose_doc(
        f"legal_basis: consent\nretention: P6M\nmax_sample_ratio: {written}\n"
    )
    q = parse_policy(text, filename=FILE).purpose("quality")
    assert q.max_sample_ppm == ppm
    assert q.max_sample_ratio == ppm / 1_000_000


def test_min_retention_equal_to_retention_is_fine() -> None:
    text = purpose_doc("legal_basis: legal-obligation\nretention: P5Y\nmin_retention: P60M\n")
    assert parse_policy(text, filename=FILE).purpose("quality").min_retention == Duration(
        months=60
    )


def test_unknown_purpose_is_input_error() -> None:
    policy = parse(rules_doc("- match: {prefix: a/}\n  purpose: quality\n"))
    with pytest.raises(InputError) as info:
        policy.purpose("marketing")
    assert str(info.value) == (
        "unknown purpose 'marketing' (policy test-policy defines: quality, training)"
    )
    assert info.value.exit_code == 4


def test_policy_is_read_only() -> None:
    policy = parse(BASE)
    with pytest.raises(TypeError):
        policy.purposes["x"] = policy.purpose("quality")  # type: ignore[index]
    with pytest.raises(AttributeError):
        policy.name = "other"  # type: ignore[misc]


CLASSIFY = rules_doc("""\
    - match: {prefix: "banking/"}
      purpose: quality
    - match: {prefix: "training/", media: screen}
      purpose: training
    - match: {glob: "*-train.wav"}
      purpose: training
    - match: {prefix: "training/"}
      purpose: quality
""")


@pytest.mark.parametrize(
    ("relpath", "media", "rule_index"),
    [
        pytest.param("banking/2026/a.wav", "audio", 0, id="prefix"),
        pytest.param("banking/x-train.wav", "audio", 0, id="first-match-wins"),
        pytest.param("training/a.mp4", "screen", 1, id="prefix-and-media"),
        pytest.param("training/a.wav", "audio", 3, id="media-mismatch-falls-through"),
        pytest.param("training/a.wav", None, 3, id="unknown-media-skips-media-rule"),
        pytest.param("other/deep/x-train.wav", "audio", 2, id="glob-on-file-name"),
        pytest.param("x-train.wav.json", "audio", None, id="glob-anchored"),
        pytest.param("X-TRAIN.WAV", "audio", None, id="glob-case-sensitive"),
        pytest.param("bank/a.wav", "audio", None, id="no-match"),
        pytest.param("Banking/a.wav", "audio", None, id="prefix-case-sensitive"),
    ],
)
def test_classify(relpath: str, media: str | None, rule_index: int | None) -> None:
    policy = parse_policy(CLASSIFY, filename=FILE)
    rule = policy.classify(relpath=relpath, media=media)
    if rule_index is None:
        assert rule is None
    else:
        assert rule is policy.rules[rule_index]


def test_rule_records_file_and_line() -> None:
    policy = parse_policy(CLASSIFY, filename=FILE)
    assert [(r.file, r.line) for r in policy.rules] == [
        (FILE, 12), (FILE, 14), (FILE, 16), (FILE, 18),
    ]
    assert policy.rules[1].describe() == (
        f"{FILE}:14: prefix 'training/' and media 'screen' -> training"
    )


def test_policy_built_in_code_matches_parsed() -> None:
    built = Policy(
        name="test-policy",
        purposes={
            "quality": Purpose(
                name="quality", legal_basis="legitimate-interests", retention=Duration(months=6)
            ),
        },
    )
    parsed = parse(BASE)
    assert built.canonical == parsed.canonical
    assert built.sha256 == parsed.sha256
    assert built == parsed  # files are not part of equality


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"purposes": {}}, id="no-purpose"),
        pytest.param({"version": 2}, id="version"),
        pytest.param({"rules": (ClassifyRule(purpose="nope", prefix="a/"),)}, id="rule-target"),
    ],
)
def test_policy_constructor_validates(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "name": "p",
        "purposes": {"q": Purpose(name="q", legal_basis="consent", retention=Duration(days=1))},
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        Policy(**args)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- canonical

CANONICAL_BASE = """\
version: 1
name: test-policy
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: P6M
    media: [audio]
    max_sample_ratio: 0.3
    description: Quality.
  training:
    legal_basis: legitimate-interests
    retention: P6M
    media: [audio, screen]
quarantine:
  retention: P30D
classify:
  - match: {prefix: training/}
    purpose: training
  - match: {glob: "*.wav"}
    purpose: quality
"""

SAME_MEANING = [
    pytest.param(
        "# A comment\n" + CANONICAL_BASE.replace("P6M\n", "P6M   # six months\n"),
        id="comments-and-spaces",
    ),
    pytest.param(
        """\
classify:
- purpose: training
  match:
    prefix: "training/"
- {purpose: quality, match: {glob: '*.wav'}}
quarantine: {retention: P30D}
purposes:
  training:
    media:
    - screen
    - audio
    retention: P6M
    legal_basis: legitimate-interests
  quality: {description: "Quality.", max_sample_ratio: 0.300, retention: P6M,
            legal_basis: legitimate-interests}
name: "test-policy"
version: 1
""",
        id="reordered-restyled",
    ),
    pytest.param(
        CANONICAL_BASE.replace("quarantine:\n  retention: P30D\n", "")
        .replace("    media: [audio]\n", ""),
        id="defaults-left-out",
    ),
    pytest.param(CANONICAL_BASE.replace("P6M", "P0Y6M").replace("P30D", "P30DT0S"),
                 id="durations-respelled"),
]


@pytest.mark.parametrize("variant", SAME_MEANING)
def test_canonical_hash_ignores_form(variant: str) -> None:
    base = parse_policy(CANONICAL_BASE, filename="a.yaml")
    other = parse_policy(variant, filename="b.yaml")
    assert other.canonical == base.canonical
    assert other.sha256 == base.sha256


DIFFERENT_MEANING = [
    pytest.param(("retention: P6M\n    media: [audio]\n", "retention: P7M\n    media: [audio]\n"),
                 id="retention"),
    pytest.param(("legitimate-interests\n    retention: P6M\n    media: [audio]\n",
                  "consent\n    retention: P6M\n    media: [audio]\n"), id="legal-basis"),
    pytest.param(("media: [audio]\n", "media: [audio, video]\n"), id="media"),
    pytest.param(("0.3", "0.31"), id="sample-ratio"),
    pytest.param(("    max_sample_ratio: 0.3\n", ""), id="sample-cap-removed"),
    pytest.param(("Quality.", "Quality!"), id="description"),
    pytest.param(("retention: P30D", "retention: P31D"), id="quarantine"),
    # 30 calendar days and 720 hours differ across daylight-saving changes.
    pytest.param(("retention: P30D", "retention: PT720H"), id="days-are-not-24h"),
    pytest.param(("name: test-policy", "name: test-policy-2"), id="name"),
    pytest.param(("prefix: training/", "prefix: train/"), id="rule-prefix"),
    pytest.param(("  training:\n    legal", "  training:\n    min_retention: P1M\n    legal"),
                 id="min-retention-added"),
    pytest.param(
        ("  - match: {prefix: training/}\n    purpose: training\n"
         "  - match: {glob: \"*.wav\"}\n    purpose: quality\n",
         "  - match: {glob: \"*.wav\"}\n    purpose: quality\n"
         "  - match: {prefix: training/}\n    purpose: training\n"),
        id="rule-order",
    ),
]


@pytest.mark.parametrize("change", DIFFERENT_MEANING)
def test_canonical_hash_changes_with_meaning(change: tuple[str, str]) -> None:
    old, new = change
    assert old in CANONICAL_BASE
    base = parse_policy(CANONICAL_BASE, filename="a.yaml")
    other = parse_policy(CANONICAL_BASE.replace(old, new), filename="a.yaml")
    assert other.sha256 != base.sha256


def test_canonical_form_is_documented_shape() -> None:
    policy = parse_policy(CANONICAL_BASE, filename="a.yaml")
    assert policy.sha256 == sha256_hex(policy.canonical)
    assert b" " not in policy.canonical.replace(b"Quality.", b"")
    assert policy.canonical.startswith(b'{"classify":[{"match":{"glob":null,"media":null,')
    assert b'"max_sample_ppm":300000' in policy.canonical
    assert b'"quarantine":{"retention":"P30D"}' in policy.canonical
    assert b"a.yaml" not in policy.canonical


def test_canonical_known_answer() -> None:
    """The example of docs/policies.md; a change here breaks every stored policy hash."""
    policy = parse_policy(
        "version: 1\nname: example\npurposes:\n  quality:\n"
        "    legal_basis: legitimate-interests\n    retention: P6M\n"
        "    max_sample_ratio: 0.30\nclassify:\n  - match: {prefix: quality/}\n"
        "    purpose: quality\n",
        filename="example.yaml",
    )
    assert policy.canonical == (
        b'{"classify":[{"match":{"glob":null,"media":null,"prefix":"quality/"},'
        b'"purpose":"quality"}],"name":"example","purposes":{"quality":{"description":null,'
        b'"legal_basis":"legitimate-interests","max_sample_ppm":300000,"media":["audio"],'
        b'"min_retention":null,"reference":null,"retention":"P6M"}},'
        b'"quarantine":{"retention":"P30D"},"version":1}'
    )
    assert policy.sha256 == "772c02af67c9c32fc9b86cea00a9916a9091ab1ea38422064e4b31cc071c6853"


BASE_SHA256 = parse_policy(CANONICAL_BASE, filename="a.yaml").sha256


@settings(max_examples=50)
@given(data=st.data())
def test_canonical_hash_stable_under_any_key_order(data: st.DataObject) -> None:
    tree = yaml.safe_load(CANONICAL_BASE)

    def shuffle(value: object) -> object:
        if isinstance(value, dict):
            keys = data.draw(st.permutations(list(value)))
            return {k: shuffle(value[k]) for k in keys}
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return data.draw(st.permutations(value))  # media lists are sets
        if isinstance(value, list):
            return [shuffle(v) for v in value]  # rule order matters
        return value

    flow = data.draw(st.sampled_from([True, False, None]))
    text = yaml.safe_dump(shuffle(tree), sort_keys=False, default_flow_style=flow)
    assert parse_policy(text, filename="x.yaml").sha256 == BASE_SHA256


# ----------------------------------------------------------------------------- folders


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


PART_A = """\
version: 1
name: split
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: P6M
classify:
  - match: {prefix: a/}
    purpose: quality
"""
PART_B_PURPOSE = """\
  training:
    legal_basis: legitimate-interests
    retention: P6M
"""
PART_B_RULES = """\
  - match: {prefix: b/}
    purpose: training
  - match: {prefix: c/}
    purpose: quality
"""
PART_B = "version: 1\nname: split\npurposes:\n" + PART_B_PURPOSE + "classify:\n" + PART_B_RULES


def test_folder_merges_files_in_name_order(tmp_path: Path) -> None:
    write(tmp_path, "20-b.yml", PART_B)
    write(tmp_path, "10-a.yaml", PART_A)
    write(tmp_path, "README.md", "not a policy: {")
    write(tmp_path, ".#10-a.yaml", "editor lock file: {")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "x.yaml", "ignored: [")
    policy = load_policy_dir(tmp_path)
    assert sorted(policy.purposes) == ["quality", "training"]
    assert [r.prefix for r in policy.rules] == ["a/", "b/", "c/"]
    assert [Path(r.file or "").name for r in policy.rules] == ["10-a.yaml", "20-b.yml", "20-b.yml"]
    assert policy.files == (str(tmp_path / "10-a.yaml"), str(tmp_path / "20-b.yml"))
    # The same policy in one file: same hash (file names are not part of the policy).
    single = PART_A.replace("classify:", PART_B_PURPOSE + "classify:") + PART_B_RULES
    assert parse_policy(single, filename="one.yaml").sha256 == policy.sha256


def test_folder_rules_only_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", PART_A)
    write(tmp_path, "b.yaml", "version: 1\nname: split\nclassify:\n"
                              "  - match: {glob: '*.wav'}\n    purpose: quality\n")
    assert [r.glob for r in load_policy_dir(tmp_path).rules] == [None, "*.wav"]


def folder_error(tmp_path: Path, files: dict[str, str]) -> PolicyError:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(PolicyError) as info:
        load_policy_dir(tmp_path)
    return info.value


def test_folder_name_mismatch_names_both_files(tmp_path: Path) -> None:
    err = folder_error(tmp_path, {"a.yaml": PART_A,
                                  "b.yaml": PART_B.replace("name: split", "name: other")})
    b, a = tmp_path / "b.yaml", tmp_path / "a.yaml"
    assert str(err) == (f"{b}:2: name: 'other' differs from 'split' in {a}:2 "
                        "(all files of a policy share one name)")


def test_folder_purpose_in_two_files(tmp_path: Path) -> None:
    err = folder_error(tmp_path, {"a.yaml": PART_A,
                                  "b.yaml": PART_B.replace("training:", "quality:")})
    assert str(err) == (f"{tmp_path / 'b.yaml'}:4: purposes.quality: purpose defined twice: "
                        f"already in {tmp_path / 'a.yaml'}:4")


def test_folder_quarantine_in_two_files(tmp_path: Path) -> None:
    q = "quarantine:\n  retention: P30D\n"
    err = folder_error(tmp_path, {"a.yaml": PART_A + q, "b.yaml": PART_B + q})
    assert str(err) == (f"{tmp_path / 'b.yaml'}:12: quarantine: defined twice: "
                        f"already in {tmp_path / 'a.yaml'}:10")


def test_folder_each_file_needs_version(tmp_path: Path) -> None:
    err = folder_error(tmp_path, {"a.yaml": PART_A,
                                  "b.yaml": PART_B.replace("version: 1\n", "")})
    assert (err.file, err.line, err.key) == (str(tmp_path / "b.yaml"), 1, None)
    assert "missing required key 'version'" in str(err)


def test_folder_rule_names_purpose_of_no_file(tmp_path: Path) -> None:
    err = folder_error(tmp_path, {"a.yaml": PART_A, "b.yaml": PART_B.replace(
        "purpose: quality", "purpose: evaluation")})
    assert (err.file, err.line, err.key) == (str(tmp_path / "b.yaml"), 11, "classify[1].purpose")


def test_folder_without_policy_file(tmp_path: Path) -> None:
    err = folder_error(tmp_path, {"notes.txt": "hello"})
    assert str(err) == (f"{tmp_path}: no policy file (*.yaml, *.yml) in this folder; "
                        "refusing to run without a policy")


def test_folder_without_purpose(tmp_path: Path) -> None:
    err = folder_error(tmp_path, {"a.yaml": "version: 1\nname: x\n",
                                  "b.yaml": "version: 1\nname: x\n"})
    assert err.file == str(tmp_path)
    assert "no purpose defined in" in str(err)


def test_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy folder"):
        load_policy_dir(tmp_path / "nope")


def test_folder_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy_dir(tmp_path)


def test_single_file_path(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", PART_A)
    write(tmp_path, "b.yaml", "broken: [")
    assert load_policy_dir(tmp_path / "a.yaml").files == (str(tmp_path / "a.yaml"),)


def test_sources_in_memory_match_folder(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", PART_A)
    write(tmp_path, "b.yaml", PART_B)
    merged = parse_policy_sources([("a.yaml", PART_A), ("b.yaml", PART_B)])
    assert merged.sha256 == load_policy_dir(tmp_path).sha256


# ----------------------------------------------------------------------------- shipped pack


def test_shipped_pack_loads_with_expected_rules() -> None:
    policy = load_policy_dir(PACK_DIR)
    assert policy.name == "cnil-fr-contact-centre"
    got = {
        name: (p.legal_basis, p.retention.iso(), p.min_retention and p.min_retention.iso(),
               sorted(p.media), p.max_sample_ppm)
        for name, p in policy.purposes.items()
    }
    assert got == {
        "quality": ("legitimate-interests", "P6M", None, ["audio"], 300_000),
        "training": ("legitimate-interests", "P6M", None, ["audio", "screen"], None),
        "evaluation-documents": ("legitimate-interests", "P1Y", None, ["document"], None),
        "banking-evidence": ("legal-obligation", "P5Y", "P5Y", ["audio"], None),
    }
    assert policy.quarantine_retention.iso() == "P30D"
    assert all(p.reference and p.description for p in policy.purposes.values())
    route = {
        ("banking/2026/call.wav", "audio"): "banking-evidence",
        ("training/call.wav", "audio"): "training",
        ("training/call.mp4", "screen"): "training",
        ("evaluations/grid.pdf", "document"): "evaluation-documents",
        ("quality/call.wav", "audio"): "quality",
    }
    for (relpath, media), purpose in route.items():
        rule = policy.classify(relpath=relpath, media=media)
        assert rule is not None and rule.purpose == purpose, relpath
    assert policy.classify(relpath="call.wav", media="audio") is None  # -> quarantine


def test_shipped_pack_hash_is_stable() -> None:
    first, second = load_policy_dir(PACK_DIR), load_policy_dir(PACK_DIR)
    assert first.sha256 == second.sha256 == sha256_hex(first.canonical)
    assert first.canonical == second.canonical
    text = (PACK_DIR / "cnil-fr-contact-centre.yaml").read_text(encoding="utf-8")
    assert parse_policy(text, filename="elsewhere.yaml").sha256 == first.sha256


def test_shipped_pack_dates() -> None:
    policy = load_policy_dir(PACK_DIR)
    recorded = datetime(2024, 2, 29, 10, 0, tzinfo=UTC)
    due = {n: p.retention.add_to(recorded) for n, p in policy.purposes.items()}
    assert due["quality"] == datetime(2024, 8, 29, 10, 0, tzinfo=UTC)
    assert due["evaluation-documents"] == datetime(2025, 2, 28, 10, 0, tzinfo=UTC)
    assert due["banking-evidence"] == datetime(2029, 2, 28, 10, 0, tzinfo=UTC)
