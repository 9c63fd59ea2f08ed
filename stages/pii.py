"""PII: replace emails, IP addresses, phone numbers, payment cards, China resident IDs and IBANs by placeholders.

Each type is a candidate regex plus a check that keeps precision: cards must pass
Luhn and start with a card-network prefix, China IDs need a real birth date and
the ISO 7064 check character, IBANs their country's length and mod-97; an IPv4
that looks like a version number ("v1.2.3.4", "1.0.0.0") stays, and so do
addresses that identify no one (loopback, private networks, documentation ranges;
``keep_private_ips: false`` redacts them too); phones need a "+" country code,
the North-American (NNN) NNN-NNNN layout, a mainland-China mobile
(1[3-9]X XXXX XXXX), a China landline with its area code (010-12345678), or a
grouped national number with its trunk 0 (020 7946 0958, 01 23 45 67 89).
So dates, prices, ISBNs, coordinates and numbers that fail a checksum stay.

Rows are pre-selected per type with a vectorized Arrow regex; only candidate
rows go through Python. Text outside a replaced span is untouched. Columns:
``pii_<type>`` (int32 count per document) for each enabled type.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.stage import Stage, StageResult

TYPES = ("email", "iban", "cn_id", "card", "ip", "phone")
PLACEHOLDERS = {"email": "<EMAIL>", "iban": "<IBAN>", "cn_id": "<CN_ID>", "card": "<CARD>", "ip": "<IP>",
                "phone": "<PHONE>"}

# Boundaries are ASCII (re.ASCII): a Chinese character right before or after a number is a boundary.
_FLAGS = re.ASCII
EMAIL_RE = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])", _FLAGS)
IBAN_RE = re.compile(r"(?<![\w\-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)", _FLAGS)
CN_ID_RE = re.compile(
    r"(?<![\w\-.])[1-8]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\w\-])", _FLAGS)
CARD_RE = re.compile(r"(?<![\w\-.,])\d(?:[ \-]?\d){11,18}(?![\w\-]|[.,]\d)", _FLAGS)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# An address followed by "/NN" is a network (CIDR), not a host: left alone.
IPV4_RE = re.compile(rf"(?<![\w.\-]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d|/\d)", _FLAGS)
IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)?(?![\w:]|/\d)", _FLAGS)
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|\bver|version|release|build|rev|revision|python|java|node)[\s.:=]*$")
PHONE_RE = re.compile(
    r"(?<![\w+\-.])(?:"
    r"(?P<intl>\+\d[\d \-.()]{6,22}\d)"  # +CC ...
    r"|(?P<nanp>(?:1[ .\-])?(?:\(\d{3}\) ?\d{3}[ .\-]?|\d{3}([.\-])\d{3}\3)\d{4})"  # (555) 123-4567, 555-123-4567
    r"|(?P<cn_mobile>1[3-9]\d(?:[ \-]?\d{4}){2})"  # 138 1234 5678
    r"|(?P<cn_landline>\(?0\d{2,3}\)?[ \-]\d{7,8})"  # 010-12345678, (0755) 1234567
    r"|(?P<national>0[1-9]\d{1,3}[ \-]\d{3,4}[ \-]?\d{3,4}|0[1-9](?:[ .]\d\d){4})"  # 020 7946 0958, 01 23 45 67 89
    r")(?![\w\-]|[.,]\d)", _FLAGS)

#: RE2 pre-filters: a row without a match cannot hold that type.
PREFILTERS = {
    "email": r"[A-Za-z0-9]@[A-Za-z0-9]",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    "cn_id": r"\d{17}[\dXx]",
    "card": r"\d{4}[ \-]?\d{4}[ \-]?\d{2}",
    "ip": r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:",
    "phone": r"\d{3}[ .\-)]*\d{3}|\d\d[ .]\d\d[ .]\d\d[ .]\d\d",
}

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_network(digits: str) -> str | None:
    """The card network an issuer prefix and length belong to, or None."""
    n, p2, p4 = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or 644 <= int(digits[:3]) <= 649 or p2 == 65) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if (300 <= int(digits[:3]) <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    return None


def card_valid(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19:
        return False
    groups = re.split(r"[ \-]", text)
    if len(groups) > 1:  # grouped cards come as 4-4-4-4(-3) or 4-6-5 (Amex/Diners)
        sizes = [len(g) for g in groups]
        if not (sizes[:-1] == [4] * (len(sizes) - 1) and 1 <= sizes[-1] <= 4) and sizes not in ([4, 6, 5], [4, 6, 4]):
            return False
        if len({sep for sep in text if sep in " -"}) > 1:
            return False
    return luhn_valid(digits) and card_network(digits) is not None


def cn_id_valid(text: str) -> bool:
    try:
        datetime.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    total = sum(int(ch) * w for ch, w in zip(text[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == text[17].upper()


def iban_length(text: str) -> int:
    """Characters of ``text`` (spaces included) making a valid IBAN, 0 if none (longer matches are trimmed)."""
    compact = text.replace(" ", "")
    length = IBAN_LENGTHS.get(compact[:2])
    if length is None or len(compact) < length:
        return 0
    compact = compact[:length]
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    if int(number) % 97 != 1:
        return 0
    seen, end = 0, 0
    for end, ch in enumerate(text, start=1):
        if ch != " ":
            seen += 1
            if seen == length:
                break
    return end


#: Addresses that identify no one: loopback, RFC 1918 / unique-local private networks, carrier NAT,
#: link-local, multicast, reserved, unspecified, the documentation ranges (RFC 5737 / 3849: they appear
#: in manuals and test suites, never on a real host) and well-known public resolvers.
NON_PERSONAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16",
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
))
PUBLIC_DNS = frozenset({"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
                        "208.67.222.222", "208.67.220.220", "114.114.114.114", "223.5.5.5", "223.6.6.6",
                        "2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111"})


def ip_is_personal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if str(address) in PUBLIC_DNS:
        return False
    return not any(address.version == net.version and address in net for net in NON_PERSONAL_NETWORKS)


def ipv4_valid(match: re.Match, keep_private: bool = True) -> bool:
    text = match.group(0)
    octets = text.split(".")
    if all(len(o) == 1 for o in octets[:3]):  # 1.0.0.0, 8.2.4.44: versions and section numbers
        return False
    if _VERSION_BEFORE.search(match.string, max(0, match.start() - 12), match.start()):
        return False
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return not keep_private or ip_is_personal(address)


def ipv6_valid(text: str, keep_private: bool = True) -> bool:
    groups = [g for g in text.split(":") if g]
    if len(groups) < 3 or not any(ch.isdigit() for ch in text):
        return False
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return not keep_private or ip_is_personal(address)


def country_code_plausible(digits: str) -> bool:
    """A coarse check of the ITU country code in front of an international number."""
    if digits[0] == "0" or digits[:2] in ("28", "83", "89"):  # unassigned blocks
        return False
    if digits[0] == "1":  # NANP: area code and exchange start with 2-9
        return len(digits) == 11 and digits[1] in "23456789" and digits[4] in "23456789"
    if digits[:2] == "86":
        return 11 <= len(digits) <= 13
    return True


def phone_valid(match: re.Match) -> bool:
    kind = match.lastgroup
    text = match.group(kind)
    digits = re.sub(r"\D", "", text)
    if kind == "intl":
        if not country_code_plausible(digits):
            return False
        if not 8 <= len(digits) <= 15 or "  " in text or text.count("(") != text.count(")"):
            return False
        groups = [g for g in re.split(r"[ \-.()]+", text[1:]) if g]
        if len(groups) == 1:  # unseparated: +8613812345678 (country code and a full national number)
            return len(digits) >= 11
        if "." in text and len(groups) < 3:  # +35236450.6 is a decimal
            return False
        return len(groups) <= 7 and len(groups[-1]) >= 2 and sum(len(g) == 1 for g in groups) <= 2
    if kind == "nanp":  # area code 2-9; exchange 2-9 unless the layout "(NNN) NNN-NNNN" already says phone
        local = digits[-10:]
        return local[0] in "23456789" and (local[3] in "23456789" or "(" in text)
    if kind == "national":  # a trunk "0" and a full national number (UK, DE, FR ...); "01 01 00 00 00" is a date
        return 10 <= len(digits) <= 11 and "0000" not in digits
    return True


class Redactor:
    """Replace one PII type in a string; counts what it replaced."""

    def __init__(self, kind: str, pattern: re.Pattern, check: Callable[[re.Match], int | bool]):
        self.kind, self.pattern, self.check = kind, pattern, check
        self.placeholder = PLACEHOLDERS[kind]

    def __call__(self, text: str) -> tuple[str, int]:
        count = 0

        def replace(match: re.Match) -> str:
            nonlocal count
            verdict = self.check(match)
            if verdict is True:
                count += 1
                return self.placeholder
            if verdict:  # a prefix length (IBAN followed by more capitals)
                count += 1
                return self.placeholder + match.group(0)[verdict:]
            return match.group(0)

        return self.pattern.sub(replace, text), count


def ip_redactor(keep_private: bool = True) -> Callable[[str], tuple[str, int]]:
    v4 = Redactor("ip", IPV4_RE, lambda m: ipv4_valid(m, keep_private))
    v6 = Redactor("ip", IPV6_RE, lambda m: ipv6_valid(m.group(0), keep_private))

    def both(text: str) -> tuple[str, int]:
        text, n6 = v6(text) if ":" in text else (text, 0)
        text, n4 = v4(text)
        return text, n4 + n6

    return both


REDACTORS: dict[str, Callable[[], Callable[[str], tuple[str, int]]]] = {
    "email": lambda: Redactor("email", EMAIL_RE, lambda m: True),
    "iban": lambda: Redactor("iban", IBAN_RE, lambda m: (lambda n: True if n == len(m.group(0)) else n)(
        iban_length(m.group(0)))),
    "cn_id": lambda: Redactor("cn_id", CN_ID_RE, lambda m: cn_id_valid(m.group(0))),
    "card": lambda: Redactor("card", CARD_RE, lambda m: card_valid(m.group(0))),
    "ip": ip_redactor,
    "phone": lambda: Redactor("phone", PHONE_RE, phone_valid),
}


@dataclass
class PiiParams:
    #: PII types to replace, in this order: email, iban, cn_id, card, ip, phone.
    types: list[str] = field(default_factory=lambda: list(TYPES))
    #: Reject "pii:too-many" when a document holds more than this many replaced items (None: never reject).
    max_items: int | None = None
    #: Leave loopback, private, documentation, link-local and public-DNS IP addresses (they identify no one).
    keep_private_ips: bool = True

    def validate(self) -> None:
        unknown = [t for t in self.types if t not in TYPES]
        if unknown:
            raise ValueError(f"types: unknown PII type {unknown[0]!r} (known: {', '.join(TYPES)})")
        if self.max_items is not None and self.max_items < 0:
            raise ValueError("max_items: must be >= 0")


def redact(text: str, types: list[str] | tuple[str, ...] = TYPES) -> tuple[str, dict[str, int]]:
    """Redact one string (convenience for users and tests); returns the text and counts per type."""
    counts = {}
    for kind in TYPES:
        if kind in types:
            text, counts[kind] = REDACTORS[kind]()(text)
    return text, counts


class Pii(Stage):
    name = "pii"
    Params = PiiParams
    outputs = tuple(pa.field(f"pii_{kind}", pa.int32()) for kind in TYPES)

    def output_fields(self) -> list[pa.Field]:
        """A count per replaced type, for the types chosen."""
        return [f for f in self.outputs if f.name[len("pii_"):] in self.params.types]

    def setup(self) -> None:
        self.kinds = [k for k in TYPES if k in self.params.types]
        self.redactors = {k: REDACTORS[k]() for k in self.kinds}
        if "ip" in self.redactors:
            self.redactors["ip"] = ip_redactor(self.params.keep_private_ips)

    def process(self, table: pa.Table) -> StageResult:
        self.ensure_setup()
        n = table.num_rows
        texts = pc.fill_null(table["text"], "")
        candidates = {k: pc.match_substring_regex(texts, PREFILTERS[k]).to_numpy(zero_copy_only=False)
                      for k in self.kinds}
        counts = {k: np.zeros(n, dtype=np.int32) for k in self.kinds}
        any_candidate = np.zeros(n, dtype=bool)
        for mask in candidates.values():
            any_candidate |= mask
        rows = np.flatnonzero(any_candidate)
        new_text = table["text"]
        if len(rows):
            values = texts.take(pa.array(rows)).to_pylist()
            changed = False
            for j, i in enumerate(rows):
                text, replaced = values[j], 0
                for kind in self.kinds:
                    if candidates[kind][i]:
                        text, found = self.redactors[kind](text)
                        counts[kind][i] = found
                        replaced += found
                if replaced:
                    values[j], changed = text, True
            if changed:
                full = table["text"].to_pylist()
                for j, i in enumerate(rows):
                    if full[i] is not None:
                        full[i] = values[j]
                new_text = pa.array(full, pa.string())
            index = table.column_names.index("text")
            table = table.set_column(index, table.schema.field(index).with_type(pa.string()), new_text)
        for kind in self.kinds:
            table = table.append_column(f"pii_{kind}", pa.array(counts[kind], pa.int32()))
        reasons = None
        if self.params.max_items is not None:
            total = sum(counts.values()) if counts else np.zeros(n, dtype=np.int32)
            reasons = pa.array(np.where(total > self.params.max_items, "pii:too-many", None), pa.string())
        return StageResult(table, reasons)
