"""PII stage: planted valid PII in real text is redacted exactly; clean real text stays byte-identical."""

from __future__ import annotations

import glob
import ipaddress
import random
import re
import sysconfig

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.params import ConfigError
from curate.stages.pii import PLACEHOLDERS, TYPES, Pii
from curate.tests.corpora import book_paragraphs, chinese_paragraphs

# ---- independent generators of valid PII (their own checksum code, not the stage's)


def luhn_complete(prefix_and_body: str) -> str:
    digits = [int(d) for d in prefix_and_body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return prefix_and_body + str((10 - total % 10) % 10)


def make_card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("2221", 16), ("37", 15), ("6011", 16), ("62", 19)])
    number = luhn_complete(prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1)))
    style = rng.choice(["plain", "spaces", "dashes"])
    if style == "plain" or length == 19:
        return number
    groups = [number[:4], number[4:10], number[10:]] if length == 15 else [number[i:i + 4] for i in range(0, 16, 4)]
    return (" " if style == "spaces" else "-").join(groups)


def make_cn_id(rng: random.Random) -> str:
    region = rng.choice(["110105", "310104", "440305", "510107", "330106"])
    birth = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = region + birth + f"{rng.randint(0, 999):03d}"
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    check = (12 - sum(int(c) * w for c, w in zip(body, weights)) % 11) % 11
    return body + ("X" if check == 10 else str(check))


def make_iban(rng: random.Random) -> str:
    country, bban_length = rng.choice([("DE", 18), ("FR", 23), ("GB", 18), ("NL", 14), ("ES", 20)])
    if country in ("GB", "NL"):
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        bban += "".join(rng.choice("0123456789") for _ in range(bban_length - 4))
    else:
        bban = "".join(rng.choice("0123456789") for _ in range(bban_length))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    iban = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def make_ip(rng: random.Random) -> str:
    while True:
        if rng.random() < 0.7:
            address = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            address = ipaddress.IPv6Address((0x2400 << 112) | rng.getrandbits(112))
        text = str(address)
        # x.y.z.N with three one-digit octets reads as a version number: the stage leaves those (documented)
        if address.is_global and not address.is_multicast and not address.is_reserved and not re.match(r"\d\.\d\.\d\.", text):
            return text


def make_phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    area, exchange = str(rng.randint(2, 9)) + d(2), str(rng.randint(2, 9)) + d(2)
    return rng.choice([
        f"+44 20 {d(4)} {d(4)}",
        f"+49 30 {d(8)}",
        f"+1 ({area}) {exchange}-{d(4)}",
        f"({area}) {exchange}-{d(4)}",
        f"{area}-{exchange}-{d(4)}",
        f"+86 1{rng.choice('3456789')}{d(1)} {d(4)} {d(4)}",
        f"1{rng.choice('3456789')}{d(9)}",
        f"010-{rng.randint(2, 8)}{d(7)}",
        f"020 {rng.randint(3, 8)}{d(3)} {d(4)}",  # national formats with the trunk 0
        f"07{d(3)} {d(6)}",
        f"01 {d(2)} {d(2)} {d(2)} {d(2)}",
    ])


def make_email(rng: random.Random) -> str:
    user = rng.choice(["li.wei", "j_smith", "anna+news", "zhang.san2019", "o.connor"])
    domain = rng.choice(["example.com", "mail.example.org", "qq.com", "uni-heidelberg.de", "163.com"])
    return f"{user}@{domain}"


MAKERS = {"email": make_email, "iban": make_iban, "cn_id": make_cn_id, "card": make_card, "ip": make_ip,
          "phone": make_phone}

# ---- real text


def code_blocks() -> list[str]:
    """Blank-line separated blocks of the installed Python standard library's modules."""
    stdlib = sysconfig.get_paths()["stdlib"]
    blocks = []
    for path in sorted(glob.glob(stdlib + "/*.py")) + sorted(glob.glob(stdlib + "/*/*.py")):
        text = open(path, encoding="utf-8", errors="replace").read()
        blocks += [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    return blocks


def run_pii(texts, **params) -> pa.Table:
    stage = Pii.from_config(params)
    stage.ensure_setup()
    result = stage.process(pa.table({"text": pa.array(texts, pa.string())}))
    assert result.reasons is None or all(r is None for r in result.reasons.to_pylist())
    return result.table


def test_planted_pii_in_real_text_is_redacted_and_nothing_else_changes(shared_data):
    rng = random.Random(20261123)
    english = [p for p in book_paragraphs(shared_data) if len(p) > 200]
    chinese = [p for p in chinese_paragraphs(shared_data) if len(p) > 100]
    hosts = rng.sample(english, 300) + rng.sample(chinese, 300)
    assert run_pii(hosts)["text"].to_pylist() == hosts  # the host paragraphs are clean to begin with
    planted, expected, kinds = [], [], []
    for i, host in enumerate(hosts):
        kind = TYPES[i % len(TYPES)]
        value = MAKERS[kind](rng)
        # after a punctuation mark, and (Chinese has no spaces) not right before an ASCII letter or digit,
        # which would make the planted number part of a longer token
        cut = [m.end() for m in re.finditer(r"[.;:!?。；：！？，,]\s*", host)
               if not re.match(r"[A-Za-z0-9]", host[m.end():m.end() + 1])]
        at = rng.choice(cut) if cut else len(host)
        sep = "" if i >= 300 else " "  # Chinese: no spaces around the value
        label = {"email": "E-mail", "phone": "Tel", "card": "Card no.", "cn_id": "身份证号",
                 "iban": "IBAN", "ip": "from"}[kind]
        planted.append(f"{host[:at]}{sep}{label} {value}{sep}{host[at:]}")
        expected.append(f"{host[:at]}{sep}{label} {PLACEHOLDERS[kind]}{sep}{host[at:]}")
        kinds.append(kind)
    table = run_pii(planted)
    out = table["text"].to_pylist()
    missed = [(k, p) for k, p, o, e in zip(kinds, planted, out, expected) if o != e]
    assert not missed, missed[:3]
    for kind in TYPES:
        counts = table[f"pii_{kind}"].to_pylist()
        assert [c == 1 for c in counts] == [k == kind for k in kinds]


def test_checksum_failures_and_lookalikes_stay():
    rng = random.Random(7)
    texts = []
    for _ in range(50):
        card = make_card(rng)
        texts.append(f"Order {card[:-1]}{(int(card[-1]) + 1) % 10} shipped.")  # Luhn fails
        cn_id = make_cn_id(rng)
        wrong = "0" if cn_id[-1] != "0" else "1"
        texts.append(f"编号{cn_id[:-1]}{wrong}。")  # check character fails
        iban = make_iban(rng).replace(" ", "")
        texts.append(f"Account {iban[:-1]}{(int(iban[-1]) + 1) % 10} closed.")  # mod-97 fails
    texts += [
        "Released as v1.2.3.4 and version 10.2.0.1; assembly 1.0.0.0; see section 8.2.4.44.",
        "On 2023-01-15 or 15/01/2023 at 12:30:45 it cost $1,234,567.89 (about ¥8,888,888.00).",
        "ISBN 978-0-306-40615-7, ISBN-13 9780306406157, ISBN 0-306-40615-2.",
        "The summit is at 40.7128, -74.0060 (40°42′46″N 74°00′22″W).",
        "Population grew from 1,234,567 to 12345678901234 between 1990-1995; pp. 123-456.",
        "Loopback 127.0.0.1, LAN 192.168.1.20, DNS 8.8.8.8, network 100.64.0.0/10, link-local fe80::1:2:3.",
        "Documentation addresses 192.0.2.146, 203.0.113.7 and 2001:db8::8a2e:370:7334.",
        "std::vector<int> and a::b::c and dead:beef and 12:34:56:78.",
        "x = +4294967296  # 1 << 32; Decimal('+35236450.6')",
        "UUID 123e4567-e89b-12d3-a456-426614174000 and sha 4f2a1c9e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39.",
    ]
    table = run_pii(texts)
    changed = [t for t, o in zip(texts, table["text"].to_pylist()) if t != o]
    assert not changed, changed


def test_clean_real_text_is_byte_identical(shared_data):
    for name, documents, types in (
        ("books", book_paragraphs(shared_data), list(TYPES)),
        ("chinese", chinese_paragraphs(shared_data), list(TYPES)),
        # Standard-library modules name their authors by e-mail address: real PII, redacted by design,
        # so code is checked for the number-shaped types, where false positives would come from.
        ("code", code_blocks(), [t for t in TYPES if t != "email"]),
    ):
        out = run_pii(documents, types=types)["text"].to_pylist()
        changed = sum(a != b for a, b in zip(documents, out))
        print(f"{name}: {changed} of {len(documents)} documents changed")
        assert len(documents) > 1000
        assert changed / len(documents) <= 0.001


def test_types_param_counts_columns_and_duckdb(tmp_path):
    texts = ["mail a.b@example.com or call +44 20 7946 0958", "", None, "nothing here 12345"]
    assert run_pii(["LAN 192.168.1.20"], keep_private_ips=False)["text"].to_pylist() == ["LAN <IP>"]
    table = run_pii(texts, types=["email"])
    assert [c for c in table.column_names if c.startswith("pii_")] == ["pii_email"]
    assert table["text"].to_pylist()[0] == "mail <EMAIL> or call +44 20 7946 0958"
    table = run_pii(texts)
    assert table.schema.field("pii_phone").type == pa.int32()
    assert table["text"].to_pylist()[2] is None
    pq.write_table(table, tmp_path / "docs.parquet")
    totals = duckdb.sql(f"SELECT sum(pii_email), sum(pii_phone), count(*) FILTER (WHERE text LIKE '%<PHONE>%') "
                        f"FROM '{tmp_path / 'docs.parquet'}'").fetchall()[0]
    assert totals == (1, 1, 1)
    empty = Pii.from_config({})
    assert empty.process(pa.table({"text": pa.array([], pa.string())})).table.schema.field("pii_card").type == pa.int32()


def test_max_items_rejects_and_params_are_validated():
    stage = Pii.from_config({"max_items": 2})
    result = stage.process(pa.table({"text": ["a@x.com b@x.com c@x.com", "a@x.com"]}))
    assert result.reasons.to_pylist() == ["pii:too-many", None]
    with pytest.raises(ConfigError, match="pii.types"):
        Pii.from_config({"types": ["email", "ssn"]})


def test_output_is_valid_utf8_with_odd_input():
    texts = ["emoji 😀 +86 138 1234 5678 😀", "\ufeffBOM a@b.com\x00nul", "surrogate-free 中文13812345678中文" * 1000]
    column = run_pii(texts)["text"]
    column.validate(full=True)  # Arrow checks every value is valid UTF-8
    out = column.to_pylist()
    assert out[0] == "emoji 😀 <PHONE> 😀"
    assert out[2].count("<PHONE>") == 1000


def test_stage_pickles_for_workers_and_handles_chunked_columns():
    import pickle

    stage = pickle.loads(pickle.dumps(Pii.from_config({"types": ["email", "phone"]})))
    chunked = pa.chunked_array([pa.array(["a x@example.com", None]), pa.array(["call 13812345678", "nothing"])])
    table = pa.table({"id": ["1", "2", "3", "4"], "text": chunked})
    out = stage.process(table).table
    assert out["text"].to_pylist() == ["a <EMAIL>", None, "call <PHONE>", "nothing"]
    assert out["pii_email"].to_pylist() == [1, 0, 0, 0] and out["pii_phone"].to_pylist() == [0, 0, 1, 0]
    assert out.column_names[:2] == ["id", "text"]
