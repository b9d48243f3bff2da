"""What the control plane accepts in each request field, as JSON Schema keywords for the OpenAPI document.

The numbers are `pacer_common.limits`, keyed by proto field in `FIELD_LIMITS`; this module adds what a `Limit` does
not say: which fields a request must set, which fields exclude each other, and the shape of a URL, an HTTP method or
a header. The control plane's checks (`pacer_control.validation`) are the reference: what the document accepts, the
control plane accepts, so a client (or a fuzzer) that follows the document is never refused for the shape of its
request; and what it refuses, the control plane refuses, except in a few corners a client hardly meets (a method in
lower case, a URL's user or host outside ASCII), each marked below. What no schema can say (a cron expression's
syntax, a time that must lie ahead, a page token the server issued) is said in words in docs/rest.md.

Pure: descriptors and limits in, dictionaries out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pacer_common import headers, limits
from pacer_common.descriptors import Kind, field_key, is_map, value_kind
from pacer_common.limits import LIMITS, POLICY_LIMITS, FieldKey, Limit
from pacer_gateway.routes import INT64_DIGITS, INT64_STRING, INT_RANGE

API: Final = "pacer.control.v1."
_ENDPOINT_REQUESTS: Final = ("AddEndpointToJobRequest", "UpdateEndpointConfigRequest")


def _each(field: str, limit: Limit, *messages: str) -> dict[FieldKey, Limit]:
    return {(API + message, field): limit for message in messages}


# Every limit the document states: the table every front door states, the policies' and the ones `LIMITS` does not
# key yet. A new limited field is one line here (or in `pacer_common.limits.LIMITS`).
FIELD_LIMITS: Final[Mapping[FieldKey, Limit]] = MappingProxyType(
    {
        **LIMITS,
        **POLICY_LIMITS,
        **_each("page_size", limits.PAGE_SIZE, "ListAuditRecordsRequest"),
        **_each("jitter_ms", limits.JITTER_MS, *_ENDPOINT_REQUESTS),
        # "" is no secret: a new endpoint that does not sign, an update that stops signing.
        **_each("signing_secret", replace(limits.SIGNING_SECRET, zero="default"), *_ENDPOINT_REQUESTS),
        **_each("signing_overlap_ms", limits.SIGNING_OVERLAP_MS, "UpdateEndpointConfigRequest"),
        **_each("endpoint", replace(limits.NAME, min_length=None), "PolicyAction"),
    }
)
# Fields with presence that a request must set all the same (fields without presence are required when their zero is
# refused, see `is_required`).
REQUIRED: Final = frozenset(
    {(API + "AddEndpointToJobRequest", "baseline"), (API + "ScheduleOneShotRunRequest", "run_at")}
)


@dataclass(frozen=True)
class Choice:
    """Fields of one message of which at most one may be set (exactly one when `required`); a name may name a oneof,
    standing for its fields."""

    fields: tuple[str, ...]
    required: bool = False

    def resolve(self, descriptor: Descriptor) -> list[FieldDescriptor]:
        """The fields of `descriptor` this choice is between."""
        found: list[FieldDescriptor] = []
        for name in self.fields:
            oneof = descriptor.oneofs_by_name.get(name)
            found += list(oneof.fields) if oneof is not None else [descriptor.fields_by_name[name]]
        return found


CHOICES: Final[Mapping[str, Choice]] = MappingProxyType(
    {
        API + "Baseline": Choice(("cron", "interval_ms"), required=True),
        API + "PolicyAction": Choice(("action",), required=True),
        API + "PauseOrResumeEndpointRequest": Choice(("resume", "pause_until")),
    }
)

# -- character classes -------------------------------------------------------------------------------------------


def _class(chars: list[int]) -> str:
    """A regular expression character class body for `chars`, in \\u escapes both Python and ECMA 262 read alike."""
    runs: list[tuple[int, int]] = []
    for code in sorted(chars):
        if runs and code == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in runs)


# What `str.strip()` removes (all in the BMP), spelled out: `\s` differs between Python and ECMA 262.
_SPACE: Final = _class([code for code in range(0x10000) if chr(code).isspace()])
_CONTROL: Final = "\\u0000-\\u001f\\u007f-\\u009f"  # Unicode category Cc
NO_NUL: Final = "^[^\\u0000]*$"
# Something besides spaces: the control plane strips names before it checks them for emptiness.
NOT_BLANK: Final = f"^[^\\u0000]*[^\\u0000{_SPACE}][^\\u0000]*$"
HEADER_VALUE: Final = "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$"  # control characters other than tab


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# Header names a tenant may not set (pacer_common.headers), in any case.
FORBIDDEN_HEADER: Final = (
    f"^(?:{'|'.join(_any_case(n) for n in sorted(headers.FORBIDDEN_NAMES))})$|^{_any_case(headers.FORBIDDEN_PREFIX)}"
)

# -- integers as decimal text ------------------------------------------------------------------------------------


def _block(low: int, last: int, size: int) -> str:
    """The numerals from `low` to `last`, which differ in one digit followed by free digits (`size` = 10^free)."""
    free = len(str(size)) - 1
    text_low, text_last = str(low), str(last)
    fixed = len(text_low) - free - 1
    first, final = text_low[fixed], text_last[fixed]
    digit = first if first == final else f"[{first}-{final}]"
    return text_low[:fixed] + digit + ("[0-9]" * free if free < 2 else f"[0-9]{{{free}}}")


def numerals(low: int, high: int) -> str:
    """A regular expression (unanchored) for the decimal numerals of `low` to `high` (1 <= low), without a sign or
    leading zeros: each run of numbers that share all but their last digits becomes one alternative."""
    if not 1 <= low <= high:
        raise ValueError(f"numerals needs 1 <= low <= high, not {low}, {high}")
    blocks = []
    while low <= high:
        size = 1
        while low % (size * 10) == 0 and low + size * 10 - 1 <= high:
            size *= 10
        last = low + min(10 - low // size % 10, (high - low + 1) // size) * size - 1
        blocks.append(_block(low, last, size))
        low = last + 1
    return "|".join(blocks)


def decimal_pattern(low: int, high: int, zero: bool) -> str:
    """The decimal strings an int64 field takes for `low`..`high`, and for 0 when `zero` (leading zeros allowed, as
    the gateway reads them)."""
    alternatives = ["-?0+"] if zero or low <= 0 else []
    if high >= 1:
        alternatives.append(f"0*(?:{numerals(max(low, 1), high)})")
    return f"^(?:{'|'.join(alternatives)})$"


# 1 to 65535, as `urllib.parse` reads a port; an absolute http(s) URL naming a host, as the control plane checks it
# (`pacer_control.validation.Checks.url`). User and host are stated in ASCII and the host without IPv6 literals: the
# document is stricter than the control plane only where a client would hardly notice.
_PORT: Final = f"0*(?:{numerals(1, 65535)})"
_USER: Final = _class([code for code in range(0x21, 0x7F) if chr(code) not in "/?#@[]"])
_URL_TAIL: Final = f"[^{_CONTROL}{_SPACE}]"
URL_PATTERN: Final = (
    f"^[Hh][Tt][Tt][Pp][Ss]?://(?:[{_USER}]*@)?[A-Za-z0-9._~!$&'()*+,;=%-]+(?::(?:{_PORT})?)?(?:[/?#]{_URL_TAIL}*)?$"
)

# Keywords for values the `Limit` table cannot describe, by field.
KEYWORDS: Final[Mapping[FieldKey, Mapping[str, Any]]] = MappingProxyType(
    {
        **{(API + m, "url"): {"pattern": URL_PATTERN} for m in _ENDPOINT_REQUESTS},
        # The control plane takes any case; the document names the canonical one. "" is the default, GET.
        **{(API + m, "method"): {"enum": [*limits.HTTP_METHODS, ""]} for m in _ENDPOINT_REQUESTS},
        **{
            (API + entry, field): keywords
            for entry in ("AddEndpointToJobRequest.HeadersEntry", "Headers.EntriesEntry")
            for field, keywords in (
                ("key", {"not": {"pattern": FORBIDDEN_HEADER}}),
                ("value", {"pattern": HEADER_VALUE}),
            )
        },
        **{
            (API + m, "signing_secret"): {
                "pattern": f"^(?:[!-~]{{{limits.SIGNING_SECRET.min_length},{limits.SIGNING_SECRET.max_length}}})?$"
            }
            for m in _ENDPOINT_REQUESTS
        },
    }
)

# -- what a field's schema says ----------------------------------------------------------------------------------


def limit_of(field: FieldDescriptor) -> Limit | None:
    """The limit on `field` in `FIELD_LIMITS`, None when it has none."""
    return FIELD_LIMITS.get(field_key(field))


def is_required(field: FieldDescriptor) -> bool:
    """True when a request must set `field`: it is in `REQUIRED`, or it has no presence and its limit refuses its
    zero (an empty name, an interval of 0, a rule with no action)."""
    if field_key(field) in REQUIRED:
        return True
    limit = limit_of(field)
    if limit is None or field.has_presence or is_map(field):
        return False
    if limit.zero != "refused":
        return False
    smallest = limit.min_length if field.is_repeated or value_kind(field) == "string" else limit.minimum
    return smallest is not None and smallest > 0


def size_keywords(field: FieldDescriptor) -> dict[str, Any]:
    """The bounds on how many values a repeated or map field holds."""
    limit = limit_of(field)
    if limit is None:
        return {}
    suffix = "Properties" if is_map(field) else "Items"
    keywords: dict[str, Any] = {}
    if limit.min_length is not None:
        keywords["min" + suffix] = limit.min_length
    if limit.max_length is not None:
        keywords["max" + suffix] = limit.max_length
    return keywords


def string_keywords(field: FieldDescriptor) -> dict[str, Any]:
    """The keywords of one string value of `field`: never U+0000; its lengths, pattern or choices."""
    keywords: dict[str, Any] = {"pattern": NO_NUL}
    limit = limit_of(field)
    if limit is not None:
        empty_ok = limit.zero != "refused"
        if limit.min_length and not empty_ok:
            keywords["minLength"] = limit.min_length
            keywords["pattern"] = NOT_BLANK
        longest = limit.max_length if limit.max_length is not None else limit.max_bytes
        if longest is not None:
            keywords["maxLength"] = longest  # a character is at least one byte
        if limit.pattern is not None:
            keywords["pattern"] = limit.pattern
    return {**keywords, **KEYWORDS.get(field_key(field), {})}


def integer_keywords(field: FieldDescriptor, kind: Kind, floor_ms: int, *, as_text: bool) -> dict[str, Any]:
    """The keywords of one integer value of `field` (of int `kind`), where the interval floor is `floor_ms`; when
    `as_text`, the value may also be a decimal string, held to the same range."""
    low, high = INT_RANGE[kind]
    limit = limit_of(field)
    zero = False
    if limit is not None:
        zero = limit.accepts_zero(omittable=False)
        lowest = limit.lowest(floor_ms)
        low = lowest if lowest is not None else low
        high = limit.maximum if limit.maximum is not None else high
    keywords: dict[str, Any] = {"type": "integer", "format": kind, "minimum": 0 if zero else low, "maximum": high}
    if zero and low > 1:  # 0 stands for a default or "no bound"; what lies between is refused
        keywords["not"] = {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": low}
    if as_text:
        keywords["type"] = ["integer", "string"]
        # `pattern` and `maxLength` hold the string form only, `minimum`/`maximum` the number form (JSON Schema).
        unbounded = limit is None or (limit.minimum is None and limit.maximum is None)
        keywords["pattern"] = INT64_STRING.pattern if unbounded else decimal_pattern(low, high, zero)
        keywords["maxLength"] = INT64_DIGITS
    return keywords


def zero_schema(field: FieldDescriptor) -> dict[str, Any]:
    """The values that leave `field` unset: null, and for a field without presence its zero in any spelling."""
    unset: list[dict[str, Any]] = [{"type": "null"}]
    if not field.has_presence and not field.is_repeated:
        kind = value_kind(field)
        if kind in ("int32", "int64"):
            unset += [{"const": 0}, {"type": "string", "pattern": "^-?0+$"}]
        elif kind == "bool":
            unset.append({"const": False})
        elif kind == "string":
            unset.append({"const": ""})
    return unset[0] if len(unset) == 1 else {"anyOf": unset}
