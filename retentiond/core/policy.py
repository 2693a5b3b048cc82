"""Retention policies: strict YAML parsing into frozen values, with a canonical hash.

Every error is a ``PolicyError`` naming file, line and key, e.g.
``policies/cnil.yaml:12: purposes.quality.retention: 'P6X' is not an ISO 8601 duration``.
The YAML is read with ``yaml.compose`` (safe loader, nodes only, nothing constructed), so
duplicate keys, non-string keys, merge keys (``<<``) and custom tags are all rejected
instead of being silently resolved.

Pure except ``load_policy_dir``, which only reads the files of one folder. The format is
documented in ``docs/policies.md``.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from types import MappingProxyType

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from retentiond.core.canonical import JSONValue, canonical_json, sha256_hex
from retentiond.core.duration import (
    Duration,
    check_retention_bounds,
    never_exceeds,
    parse_duration,
)
from retentiond.core.model import LEGAL_BASES, MEDIA, QUARANTINE
from retentiond.errors import InputError, PolicyError

__all__ = [
    "DEFAULT_MEDIA",
    "DEFAULT_QUARANTINE_RETENTION",
    "LEGAL_BASES",
    "MEDIA",
    "POLICY_VERSION",
    "RESERVED_PURPOSES",
    "SAMPLE_RATIO_SCALE",
    "ClassifyRule",
    "Policy",
    "Purpose",
    "load_policy_dir",
    "parse_policy",
    "parse_policy_sources",
]

POLICY_VERSION = 1
DEFAULT_MEDIA = frozenset({"audio"})
DEFAULT_QUARANTINE_RETENTION = Duration(days=30)
RESERVED_PURPOSES = frozenset({QUARANTINE})  # where unclassifiable recordings go
SAMPLE_RATIO_SCALE = 1_000_000  # max_sample_ratio is exact in parts per million
POLICY_SUFFIXES = (".yaml", ".yml")
MAX_POLICY_FILE_BYTES = 1 << 20  # 1 MiB per policy file; real ones are a few KiB

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PURPOSE_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ, _MERGE = _TAG + "map", _TAG + "seq", _TAG + "merge"
_KIND = {
    _STR: "a string", _INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean",
    _NULL: "null", _TAG + "timestamp": "a date", _TAG + "binary": "binary data",
}

_TOP_KEYS = ("version", "name", "purposes", "classify", "quarantine")
_PURPOSE_KEYS = (
    "legal_basis", "retention", "min_retention", "media", "max_sample_ratio", "description",
    "reference",
)
_RULE_KEYS = ("match", "purpose")
_MATCH_KEYS = ("prefix", "glob", "media")
_QUARANTINE_KEYS = ("retention",)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, kw_only=True)
class Purpose:
    """One declared purpose: why recordings are kept, on which basis, for how long."""

    name: str
    legal_basis: str
    retention: Duration
    min_retention: Duration | None = None
    media: frozenset[str] = DEFAULT_MEDIA
    max_sample_ratio: float | None = None
    description: str | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        if not _PURPOSE_RE.fullmatch(self.name) or self.name in RESERVED_PURPOSES:
            raise ValueError(f"invalid purpose name {self.name!r}")
        if self.legal_basis not in LEGAL_BASES:
            raise ValueError(f"unknown legal basis {self.legal_basis!r}")
        if not self.media or not self.media <= MEDIA:
            raise ValueError(f"media must be a non-empty subset of {sorted(MEDIA)}")
        if self.min_retention is not None and not never_exceeds(
            self.min_retention, self.retention
        ):
            raise ValueError("min_retention exceeds retention")
        if self.max_sample_ratio is not None:
            r = self.max_sample_ratio
            scaled = r * SAMPLE_RATIO_SCALE
            if not (0 < r <= 1) or not math.isclose(scaled, round(scaled), abs_tol=1e-6):
                raise ValueError("max_sample_ratio must be in (0, 1] with at most 6 decimals")

    @property
    def max_sample_ppm(self) -> int | None:
        """The sampling cap in parts per million (exact), or None for no cap."""
        if self.max_sample_ratio is None:
            return None
        return round(self.max_sample_ratio * SAMPLE_RATIO_SCALE)

    def canonical_value(self) -> dict[str, JSONValue]:
        """This purpose in the policy's canonical form (name is the enclosing key)."""
        return {
            "legal_basis": self.legal_basis,
            "retention": self.retention.iso(),
            "min_retention": None if self.min_retention is None else self.min_retention.iso(),
            "media": sorted(self.media),
            "max_sample_ppm": self.max_sample_ppm,
            "description": self.description,
            "reference": self.reference,
        }


@dataclass(frozen=True, kw_only=True)
class ClassifyRule:
    """``match`` conditions (all given ones must hold) routing a recording to ``purpose``.

    ``prefix`` is tested on the path/key relative to the inbox root ('/'-separated),
    ``glob`` (fnmatch, case-sensitive) on the last component, ``media`` on the medium.
    ``file``/``line`` say where the rule was written; they are not part of equality.
    """

    purpose: str
    prefix: str | None = None
    glob: str | None = None
    media: str | None = None
    file: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.prefix is None and self.glob is None and self.media is None:
            raise ValueError("a classify rule needs at least one of prefix, glob, media")

    def matches(self, *, relpath: str, media: str | None) -> bool:
        """True if every condition of this rule holds for the recording."""
        if self.prefix is not None and not relpath.startswith(self.prefix):
            return False
        if self.glob is not None and not fnmatch.fnmatchcase(
            posixpath.basename(relpath), self.glob
        ):
            return False
        return self.media is None or self.media == media

    def describe(self) -> str:
        """One line for explanations: ``policies/x.yaml:40: prefix 'banking/' -> banking``."""
        conds = [
            f"{k} {v!r}"
            for k, v in (("prefix", self.prefix), ("glob", self.glob), ("media", self.media))
            if v is not None
        ]
        where = f"{self.file}:{self.line}: " if self.file is not None else ""
        return f"{where}{' and '.join(conds)} -> {self.purpose}"

    def canonical_value(self) -> dict[str, JSONValue]:
        """This rule in the policy's canonical form (no file or line)."""
        return {
            "purpose": self.purpose,
            "match": {"prefix": self.prefix, "glob": self.glob, "media": self.media},
        }


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A validated policy. ``canonical`` and ``sha256`` are computed from the other fields."""

    name: str
    version: int = POLICY_VERSION
    purposes: Mapping[str, Purpose] = field(hash=False)
    rules: tuple[ClassifyRule, ...] = ()
    quarantine_retention: Duration = DEFAULT_QUARANTINE_RETENTION
    canonical: bytes = field(init=False)
    sha256: str = field(init=False)
    files: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.version != POLICY_VERSION:
            raise ValueError(f"unsupported policy version {self.version!r}")
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"invalid policy name {self.name!r}")
        purposes = dict(self.purposes)
        if not purposes:
            raise ValueError("a policy needs at least one purpose")
        for key, p in purposes.items():
            if key != p.name:
                raise ValueError(f"purpose {p.name!r} is filed under {key!r}")
        for r in self.rules:
            if r.purpose not in purposes:
                raise ValueError(f"classify rule names unknown purpose {r.purpose!r}")
        object.__setattr__(self, "purposes", MappingProxyType(purposes))
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "files", tuple(self.files))
        value: dict[str, JSONValue] = {
            "version": self.version,
            "name": self.name,
            "purposes": {n: p.canonical_value() for n, p in purposes.items()},
            "classify": [r.canonical_value() for r in self.rules],
            "quarantine": {"retention": self.quarantine_retention.iso()},
        }
        canonical = canonical_json(value)
        object.__setattr__(self, "canonical", canonical)
        object.__setattr__(self, "sha256", sha256_hex(canonical))

    def purpose(self, name: str) -> Purpose:
        """The purpose called ``name``; InputError if the policy does not define it."""
        try:
            return self.purposes[name]
        except KeyError:
            known = ", ".join(sorted(self.purposes))
            raise InputError(
                f"unknown purpose {name!r} (policy {self.name} defines: {known})"
            ) from None

    def classify(self, *, relpath: str, media: str | None) -> ClassifyRule | None:
        """The first rule matching the recording, or None (then: quarantine)."""
        for rule in self.rules:
            if rule.matches(relpath=relpath, media=media):
                return rule
        return None


# --------------------------------------------------------------------------- loading


def parse_policy(text: str, *, filename: str) -> Policy:
    """Parse one policy file's text; ``filename`` is only used in messages."""
    return parse_policy_sources([(filename, text)])


def parse_policy_sources(
    sources: Sequence[tuple[str, str]], *, where: str | None = None
) -> Policy:
    """Parse several ``(filename, text)`` files, in the given order, as one policy.

    All files say ``version: 1`` and the same ``name``; each purpose and the
    ``quarantine`` section are defined in one file only; classify rules concatenate.
    ``where`` names the whole set (e.g. the folder) in errors about it.
    """
    if not sources:
        raise PolicyError("no policy file", file=where)
    docs = [_parse_file(text, file=name) for name, text in sources]
    first = docs[0]
    purposes: dict[str, Purpose] = {}
    purpose_at: dict[str, tuple[str, int]] = {}
    quarantine: tuple[Duration, str, int] | None = None
    for doc in docs:
        if doc.name != first.name:
            raise PolicyError(
                f"{doc.name!r} differs from {first.name!r} in {first.file}:{first.name_line} "
                "(all files of a policy share one name)",
                file=doc.file, line=doc.name_line, key="name",
            )
        for purpose, line in doc.purposes:
            if purpose.name in purpose_at:
                other_file, other_line = purpose_at[purpose.name]
                raise PolicyError(
                    f"purpose defined twice: already in {other_file}:{other_line}",
                    file=doc.file, line=line, key=f"purposes.{purpose.name}",
                )
            purposes[purpose.name] = purpose
            purpose_at[purpose.name] = (doc.file, line)
        if doc.quarantine is not None:
            if quarantine is not None:
                raise PolicyError(
                    f"defined twice: already in {quarantine[1]}:{quarantine[2]}",
                    file=doc.file, line=doc.quarantine[1], key="quarantine",
                )
            quarantine = (doc.quarantine[0], doc.file, doc.quarantine[1])
    if not purposes:
        files = ", ".join(d.file for d in docs)
        raise PolicyError(
            f"no purpose defined in {files} (an empty policy would neither keep nor delete "
            "anything)",
            file=where if where is not None else first.file,
        )
    known = ", ".join(sorted(purposes))
    rules: list[ClassifyRule] = []
    for doc in docs:
        for src in doc.rules:
            target = purposes.get(src.rule.purpose)
            if target is None:
                note = ""
                if src.rule.purpose in RESERVED_PURPOSES:
                    note = "; recordings no rule matches are quarantined anyway"
                raise PolicyError(
                    f"unknown purpose {src.rule.purpose!r} (defined: {known}){note}",
                    file=doc.file, line=src.purpose_line, key=f"{src.key}.purpose",
                )
            if src.rule.media is not None and src.rule.media not in target.media:
                allowed = ", ".join(sorted(target.media))
                raise PolicyError(
                    f"contradiction: sends {src.rule.media!r} recordings to purpose "
                    f"{target.name!r}, which allows only: {allowed}",
                    file=doc.file, line=src.media_line, key=f"{src.key}.match.media",
                )
            rules.append(src.rule)
    return Policy(
        name=first.name,
        version=POLICY_VERSION,
        purposes=purposes,
        rules=tuple(rules),
        quarantine_retention=(
            DEFAULT_QUARANTINE_RETENTION if quarantine is None else quarantine[0]
        ),
        files=tuple(d.file for d in docs),
    )


def load_policy_dir(path: Path) -> Policy:
    """Load every ``*.yaml``/``*.yml`` file of folder ``path`` (by file name) as one policy.

    Dotfiles, sub-folders and other files are ignored. ``path`` may also be one file.
    The only function of ``core`` that touches the file system: it reads, nothing else.
    """
    shown = str(path)
    try:
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(
                (p for p in path.iterdir()
                 if p.suffix in POLICY_SUFFIXES and not p.name.startswith(".") and p.is_file()),
                key=lambda p: p.name,
            )
        else:
            raise PolicyError("no such policy folder", file=shown)
    except OSError as e:
        raise PolicyError(f"cannot read policy folder: {e.strerror or e}", file=shown) from e
    if not files:
        raise PolicyError(
            "no policy file (*.yaml, *.yml) in this folder; refusing to run without a policy",
            file=shown,
        )
    sources: list[tuple[str, str]] = []
    for p in files:
        name = str(p)
        try:
            if p.stat().st_size > MAX_POLICY_FILE_BYTES:
                raise PolicyError(
                    f"larger than {MAX_POLICY_FILE_BYTES} bytes; not a policy file", file=name
                )
            data = p.read_bytes()
        except OSError as e:
            raise PolicyError(f"cannot read: {e.strerror or e}", file=name) from e
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PolicyError(f"not UTF-8 text (byte {e.start})", file=name) from e
        sources.append((name, text))
    return parse_policy_sources(sources, where=shown)


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _RuleSrc:
    rule: ClassifyRule
    key: str  # "classify[3]"
    purpose_line: int
    media_line: int | None


@dataclass(frozen=True)
class _FileDoc:
    file: str
    name: str
    name_line: int
    purposes: tuple[tuple[Purpose, int], ...]
    rules: tuple[_RuleSrc, ...]
    quarantine: tuple[Duration, int] | None


@dataclass(frozen=True)
class _Entry:
    key_node: ScalarNode
    value: Node

    @property
    def line(self) -> int:
        return _line(self.key_node)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


class _Reader:
    """Walks the node tree of one file; every error names this file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._constructor = SafeConstructor()

    def error(self, message: str, *, line: int | None, key: str | None) -> PolicyError:
        return PolicyError(message, file=self.file, line=line, key=key)

    def kind(self, node: Node) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        if node.tag in _KIND:
            kind = _KIND[node.tag]
            if node.tag == _NULL:
                return kind
            return f"{kind} ({node.value!r})" if node.tag == _STR else f"{kind} ({node.value})"
        return f"a value tagged {node.tag}"

    def expect(self, node: Node, tag: str, *, key: str, what: str) -> None:
        if node.tag != tag:
            raise self.error(f"expected {what}, got {self.kind(node)}", line=_line(node),
                             key=key or None)

    def mapping(
        self, node: Node, *, key: str, allowed: Collection[str] | None, what: str = "a mapping"
    ) -> dict[str, _Entry]:
        self.expect(node, _MAP, key=key, what=what)
        assert isinstance(node, MappingNode)
        out: dict[str, _Entry] = {}
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                raise self.error("merge keys (<<) are not supported; write the keys out",
                                 line=_line(knode), key=key or None)
            if not isinstance(knode, ScalarNode) or knode.tag != _STR:
                raise self.error(f"keys must be strings, got {self.kind(knode)} "
                                 "(quote it if it is meant as a name)",
                                 line=_line(knode), key=key or None)
            name = str(knode.value)
            full = _join(key, name)
            if name in out:
                raise self.error(f"duplicate key (first at line {out[name].line})",
                                 line=_line(knode), key=full)
            out[name] = _Entry(knode, vnode)
        if allowed is not None:
            for name, entry in out.items():
                if name not in allowed:
                    hint = difflib.get_close_matches(name, allowed, n=1)
                    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise self.error(
                        f"unknown key (expected one of: {', '.join(sorted(allowed))}){suggestion}",
                        line=entry.line, key=_join(key, name),
                    )
        return out

    def require(self, entries: Mapping[str, _Entry], name: str, *, key: str, line: int) -> _Entry:
        if name not in entries:
            raise self.error(f"missing required key {name!r}", line=line, key=key or None)
        return entries[name]

    def string(self, node: Node, *, key: str) -> str:
        self.expect(node, _STR, key=key, what="a string")
        value = str(node.value)
        if not value.strip():
            raise self.error("must not be empty", line=_line(node), key=key)
        return value

    def integer(self, node: Node, *, key: str) -> int:
        self.expect(node, _INT, key=key, what="an integer")
        try:
            value = self._constructor.construct_object(node)
        except ConstructorError as e:
            raise self.error(f"not an integer: {node.value!r}", line=_line(node), key=key) from e
        assert isinstance(value, int)
        return value

    def duration(self, node: Node, *, key: str) -> Duration:
        self.expect(node, _STR, key=key, what="an ISO 8601 duration such as P6M")
        try:
            d = parse_duration(str(node.value))
            check_retention_bounds(d)
        except ValueError as e:
            raise self.error(str(e), line=_line(node), key=key) from e
        return d

    def ratio_ppm(self, node: Node, *, key: str) -> int:
        if node.tag not in (_INT, _FLOAT):
            raise self.error(f"expected a number in (0, 1], got {self.kind(node)}",
                             line=_line(node), key=key)
        text = str(node.value).replace("_", "")
        bad = self.error(f"{node.value} is outside (0, 1]", line=_line(node), key=key)
        if len(text) > 64:
            raise bad
        with localcontext() as ctx:
            ctx.prec = 100
            try:
                value = Decimal(text)
            except InvalidOperation:
                raise bad from None
            if not value.is_finite() or not (0 < value <= 1):
                raise bad
            scaled = value * SAMPLE_RATIO_SCALE
            if scaled != scaled.to_integral_value():
                raise self.error(f"{node.value} has more than 6 decimal places "
                                 "(the cap is exact in parts per million)",
                                 line=_line(node), key=key)
        return int(scaled)

    def media_list(self, node: Node, *, key: str) -> frozenset[str]:
        self.expect(node, _SEQ, key=key, what="a list of media such as [audio]")
        assert isinstance(node, SequenceNode)
        if not node.value:
            raise self.error("must list at least one medium", line=_line(node), key=key)
        seen: set[str] = set()
        for i, item in enumerate(node.value):
            medium = self.medium(item, key=f"{key}[{i}]")
            if medium in seen:
                raise self.error(f"{medium!r} listed twice", line=_line(item), key=f"{key}[{i}]")
            seen.add(medium)
        return frozenset(seen)

    def medium(self, node: Node, *, key: str) -> str:
        self.expect(node, _STR, key=key, what="a medium name")
        value = str(node.value)
        if value not in MEDIA:
            raise self.error(f"unknown medium {value!r} (allowed: {', '.join(sorted(MEDIA))})",
                             line=_line(node), key=key)
        return value


def _compose(text: str, *, file: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = None if mark is None else int(mark.line) + 1
        problem = e.problem or "unreadable"
        if e.context:
            problem = (f"{e.context} {problem}" if problem.startswith("but ")
                       else f"{problem} ({e.context})")
        raise PolicyError(f"invalid YAML: {problem}", file=file, line=line) from e
    except yaml.YAMLError as e:
        raise PolicyError(f"invalid YAML: {e}", file=file) from e


def _parse_file(text: str, *, file: str) -> _FileDoc:
    root = _compose(text, file=file)
    if root is None:
        raise PolicyError("empty file; a policy file needs at least 'version' and 'name'",
                          file=file, line=1)
    r = _Reader(file)
    top = r.mapping(root, key="", allowed=None, what="a mapping of policy keys")
    root_line = _line(root)
    # The version first: a future format must fail on its version, not on a new key.
    version_entry = r.require(top, "version", key="", line=root_line)
    version = r.integer(version_entry.value, key="version")
    if version != POLICY_VERSION:
        raise r.error(f"unsupported policy version {version} (this retentiond reads version "
                      f"{POLICY_VERSION})", line=_line(version_entry.value), key="version")
    top = r.mapping(root, key="", allowed=_TOP_KEYS)
    name_entry = r.require(top, "name", key="", line=root_line)
    name = r.string(name_entry.value, key="name")
    if not _NAME_RE.fullmatch(name):
        raise r.error(f"invalid policy name {name!r} (letters, digits, '.', '_', '-'; "
                      "at most 128)", line=_line(name_entry.value), key="name")

    purposes: list[tuple[Purpose, int]] = []
    if "purposes" in top:
        entry = top["purposes"]
        if entry.value.tag == _NULL:
            raise r.error("must define at least one purpose", line=entry.line, key="purposes")
        defs = r.mapping(entry.value, key="purposes", allowed=None,
                         what="a mapping of purpose names")
        if not defs:
            raise r.error("must define at least one purpose", line=entry.line, key="purposes")
        purposes = [(_parse_purpose(r, pname, pentry), pentry.line)
                    for pname, pentry in defs.items()]

    rules: list[_RuleSrc] = []
    if "classify" in top and top["classify"].value.tag != _NULL:
        node = top["classify"].value
        r.expect(node, _SEQ, key="classify", what="a list of rules")
        assert isinstance(node, SequenceNode)
        rules = [_parse_rule(r, item, key=f"classify[{i}]") for i, item in enumerate(node.value)]

    quarantine: tuple[Duration, int] | None = None
    if "quarantine" in top:
        entry = top["quarantine"]
        q = r.mapping(entry.value, key="quarantine", allowed=_QUARANTINE_KEYS)
        ret = r.require(q, "retention", key="quarantine", line=entry.line)
        quarantine = (r.duration(ret.value, key="quarantine.retention"), entry.line)

    return _FileDoc(file=file, name=name, name_line=_line(name_entry.value),
                    purposes=tuple(purposes), rules=tuple(rules), quarantine=quarantine)


def _parse_purpose(r: _Reader, name: str, entry: _Entry) -> Purpose:
    key = f"purposes.{name}"
    if name in RESERVED_PURPOSES:
        raise r.error(f"{name!r} is reserved for unclassifiable recordings; set its retention "
                      "under the top-level 'quarantine' key", line=entry.line, key=key)
    if not _PURPOSE_RE.fullmatch(name):
        raise r.error("invalid purpose name (lower-case letters, digits, '-', '_'; starts with "
                      "a letter; at most 63)", line=entry.line, key=key)
    f = r.mapping(entry.value, key=key, allowed=_PURPOSE_KEYS)

    basis_node = r.require(f, "legal_basis", key=key, line=entry.line).value
    basis = r.string(basis_node, key=f"{key}.legal_basis")
    if basis not in LEGAL_BASES:
        hint = difflib.get_close_matches(basis, LEGAL_BASES, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        raise r.error(f"unknown legal basis {basis!r} (expected one of: "
                      f"{', '.join(sorted(LEGAL_BASES))}){suggestion}",
                      line=_line(basis_node), key=f"{key}.legal_basis")

    retention_node = r.require(f, "retention", key=key, line=entry.line).value
    retention = r.duration(retention_node, key=f"{key}.retention")

    min_retention: Duration | None = None
    if "min_retention" in f:
        node = f["min_retention"].value
        min_retention = r.duration(node, key=f"{key}.min_retention")
        if not never_exceeds(min_retention, retention):
            raise r.error(
                f"contradiction: min_retention {min_retention.iso()} can outlast retention "
                f"{retention.iso()} (deletion would be both due and forbidden)",
                line=_line(node), key=f"{key}.min_retention",
            )

    media = DEFAULT_MEDIA
    if "media" in f:
        media = r.media_list(f["media"].value, key=f"{key}.media")

    ratio: float | None = None
    if "max_sample_ratio" in f:
        ppm = r.ratio_ppm(f["max_sample_ratio"].value, key=f"{key}.max_sample_ratio")
        ratio = ppm / SAMPLE_RATIO_SCALE

    texts: dict[str, str | None] = {"description": None, "reference": None}
    for text_key in texts:
        if text_key in f:
            texts[text_key] = r.string(f[text_key].value, key=f"{key}.{text_key}")

    return Purpose(
        name=name, legal_basis=basis, retention=retention, min_retention=min_retention,
        media=media, max_sample_ratio=ratio, description=texts["description"],
        reference=texts["reference"],
    )


def _parse_rule(r: _Reader, node: Node, *, key: str) -> _RuleSrc:
    line = _line(node)
    f = r.mapping(node, key=key, allowed=_RULE_KEYS, what="a rule {match: ..., purpose: ...}")
    match_entry = r.require(f, "match", key=key, line=line)
    purpose_entry = r.require(f, "purpose", key=key, line=line)
    purpose = r.string(purpose_entry.value, key=f"{key}.purpose")
    mkey = f"{key}.match"
    m = r.mapping(match_entry.value, key=mkey, allowed=_MATCH_KEYS)
    if not m:
        raise r.error(f"empty match: name at least one of {', '.join(_MATCH_KEYS)} (an empty "
                      "match would catch every recording)", line=match_entry.line, key=mkey)
    prefix = glob = medium = None
    media_line: int | None = None
    if "prefix" in m:
        prefix = r.string(m["prefix"].value, key=f"{mkey}.prefix")
        if prefix.startswith("/") or "\\" in prefix:
            raise r.error(f"{prefix!r}: a prefix is relative to the inbox root and uses '/' "
                          "(e.g. 'banking/')", line=_line(m["prefix"].value),
                          key=f"{mkey}.prefix")
    if "glob" in m:
        glob = r.string(m["glob"].value, key=f"{mkey}.glob")
        if "/" in glob:
            raise r.error(f"{glob!r}: a glob matches the file name only, without '/' "
                          "(use prefix for folders)", line=_line(m["glob"].value),
                          key=f"{mkey}.glob")
    if "media" in m:
        medium = r.medium(m["media"].value, key=f"{mkey}.media")
        media_line = _line(m["media"].value)
    rule = ClassifyRule(purpose=purpose, prefix=prefix, glob=glob, media=medium,
                        file=r.file, line=line)
    return _RuleSrc(rule=rule, key=key, purpose_line=_line(purpose_entry.value),
                    media_line=media_line)

