"""Detox: word-list and classifier toxicity signals, URL-domain blocklists.

Signals on every row: ``toxic_count`` (listed terms found), ``toxic_score``
(``toxic_count`` per word, a CJK character counting as a word), ``toxic_terms``
(the distinct terms found), ``toxic_prob`` when a fastText ``model`` is named,
``url_blocked`` when a domain blocklist is given. Decisions: "detox:url-blocklist",
"detox:wordlist" (``toxic_count >= min_count`` and ``toxic_score > score_threshold``;
``score_threshold: 0`` is the C4 rule, any match), "detox:classifier".

Matching is one Aho-Corasick pass over a normalized copy of the text
(lower-cased, every run of non-letters/digits folded to one space, spaces put
between Han and Latin runs): a space-delimited term is stored padded with
spaces, so it only matches whole words; a CJK term is stored bare and matches
as a substring, unless the match lies inside an allow-listed compound
(``zh_allow.txt``: 恶心呕吐 does not count as 恶心). An Arrow (RE2) pre-filter picks
the few documents worth that pass. With a ``lang`` column, a built-in list is
not matched against languages where its words are ordinary words.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.stage import Stage, StageResult

WORDLIST_DIR = Path(__file__).resolve().parent / "data" / "wordlists"
_HAN_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_NON_WORD_RE = re.compile(r"[^\w]+|_+")
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_LATIN_RE = re.compile(rf"(?<=[{_HAN}])(?=[a-z0-9])|(?<=[a-z0-9])(?=[{_HAN}])")
#: RE2 patterns (Arrow) for the normalized copy of the text.
_RE2_NON_WORD = r"[^\p{L}\p{N}\p{M}]+"
_RE2_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
_RE2_UNITS = rf"[{_RE2_CJK}]|[^ {_RE2_CJK}]+"
#: Languages a built-in list is not matched against when the table has a ``lang`` column (from
#: langid): its words are ordinary words there. The English list stays off other Latin-script
#: languages ("hoe" is Dutch for how, "dick" German for thick, "cum" Romanian for how); the
#: Chinese list off Japanese, where compounds like 色情 are everyday kanji.
LATIN_SCRIPT_LANGUAGES = frozenset(
    "af an ast az br bs ca ceb co cs cy da de eo es et eu fi fo fr fy ga gd gl gn gv hr ht hu ia id ie ilo io is it "
    "jv kw la lb li lmo lt lv mg min ms mt mwl nah nap nds nl nn no oc pam pl pms pt qu rm ro sc sco sh sk sl so sq "
    "su sv sw tk tl tr uz vec vi vo wa war xh yo zu".split())
LIST_NOT_FOR = {"en": LATIN_SCRIPT_LANGUAGES, "zh": frozenset({"ja"})}
_HOST_RE = r"^(?:[a-zA-Z][a-zA-Z0-9+.\-]*:)?//(?:[^@/?#]*@)?(?P<host>[^:/?#\[\]]+)"


def builtin_languages() -> list[str]:
    return sorted(p.stem for p in WORDLIST_DIR.glob("*.txt") if not p.stem.endswith("_allow"))


def read_terms(path: str | os.PathLike) -> list[str]:
    """Terms of a word-list file: one per line, ``#`` starts a comment line, case ignored."""
    terms = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                terms.append(line.lower())
    return terms


def read_domains(path: str | os.PathLike) -> list[str]:
    """Domains of a blocklist file: one per line (``example.com``, ``*.example.com``, a hosts-file line, or a URL)."""
    domains = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip().lower()
            if not line:
                continue
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("0.0.0.0", "127.0.0.1"):  # hosts-file format
                line = parts[1]
            domains.append(normalize_domain(line))
    return [d for d in domains if d]


def normalize_domain(domain: str) -> str:
    domain = domain.strip().lower()
    if "//" in domain:
        domain = domain.split("//", 1)[1]
    domain = domain.split("/", 1)[0].split(":", 1)[0]
    return domain.lstrip("*.").rstrip(".")


def pattern_key(term: str) -> tuple[str, int, int] | None:
    """The automaton key for a term, and how many padding characters lie before/after its core."""
    lead_wild, trail_wild = term.startswith("*"), term.endswith("*")
    core = term.strip("*")
    if _HAN_RE.search(core):  # substring, spaced the way the text is normalized: 傻b -> "傻 b", 恶心、呕吐 -> "恶心 呕吐"
        core = _HAN_LATIN_RE.sub(" ", _NON_WORD_RE.sub(" ", core).strip())
        return (core, 0, 0) if core else None
    core = _NON_WORD_RE.sub(" ", core).strip()
    if not core:
        return None
    lead, trail = (0 if lead_wild else 1), (0 if trail_wild else 1)
    return " " * lead + core + " " * trail, lead, trail


class TermMatcher:
    """Aho-Corasick over normalized text: counts listed terms outside allow-listed compounds.

    ``prefilter`` is one RE2 pattern (run by Arrow over lower-cased raw text, ~80 MB/s) that
    matches every document the automaton could match and few others; only those documents are
    normalized and scanned in Python.
    """

    def __init__(self, terms: list[str] | dict[str, list[str]], allowed: list[str] = ()):
        """``terms``: a list, or lists by group (a built-in list's language, "" for user lists)."""
        import ahocorasick

        groups = terms if isinstance(terms, dict) else {"": terms}
        self.automaton = ahocorasick.Automaton()
        for term in allowed:
            key = pattern_key(term)
            if key is not None:
                text, lead, trail = key
                self.automaton.add_word(text, (len(text), lead, trail, term.strip("*"), None))
        for group, group_terms in groups.items():  # a listed term beats an allowed one
            for term in group_terms:
                key = pattern_key(term)
                if key is not None:
                    text, lead, trail = key
                    self.automaton.add_word(text, (len(text), lead, trail, term.strip("*"), group))
        self.size = len(self.automaton)
        if self.size:
            self.automaton.make_automaton()
        all_terms = [t for group_terms in groups.values() for t in group_terms]
        self.prefilter = prefilter_pattern(all_terms) if self.size else None

    def find(self, padded: str, skip_groups: frozenset = frozenset()) -> tuple[int, list[str]]:
        """(number of listed-term occurrences, distinct terms in order) in one normalized, space-padded text.

        Terms of a group in ``skip_groups`` are ignored.
        """
        if not self.size:
            return 0, []
        hits, allowed = [], []
        for end, (length, lead, trail, term, group) in self.automaton.iter(padded):
            span = (end - length + 1 + lead, end + 1 - trail)
            if group is None:
                allowed.append((span[0], -span[1], term))
            elif group not in skip_groups:
                hits.append((span[0], -span[1], term))
        if not hits:
            return 0, []
        hits.sort()
        count, terms, last_end = 0, [], -1
        for start, neg_end, term in hits:
            end = -neg_end
            if start < last_end:  # overlaps the previous counted match ("fuck*" and "*fucking")
                continue
            if any(a_start <= start and end <= -a_neg_end for a_start, a_neg_end, _ in allowed):
                continue
            count += 1
            last_end = end
            if term not in terms:
                terms.append(term)
        return count, terms


def prefilter_pattern(terms: list[str]) -> str | None:
    """An RE2 pattern matching (at least) every lower-cased raw text in which a term can match.

    Word boundaries are ASCII (``[^a-z0-9]``): looser than the automaton's Unicode ones, so
    the filter never drops a document the automaton would match, and RE2 keeps a fast DFA.
    """
    boundary_left, boundary_right = "(?:^|[^a-z0-9])", "(?:$|[^a-z0-9])"
    groups: dict[tuple[bool, bool], list[str]] = {}
    substrings = []
    for term in terms:
        core = term.strip("*")
        if _HAN_RE.search(core):
            runs = _HAN_LATIN_RE.sub(" ", _NON_WORD_RE.sub(" ", core).strip()).split(" ")
            substrings.append("[^a-z0-9]*".join(re.escape(r) for r in runs))
            continue
        words = [re.escape(w) for w in _NON_WORD_RE.split(core) if w]
        if words:
            key = (not term.startswith("*"), not term.endswith("*"))
            groups.setdefault(key, []).append("[^a-z0-9]+".join(words))
    parts = [(boundary_left if left else "") + "(?:" + "|".join(sorted(set(alts))) + ")" + (boundary_right if right else "")
             for (left, right), alts in sorted(groups.items())]
    if substrings:
        parts.append("(?:" + "|".join(sorted(set(substrings))) + ")")
    pattern = "|".join(parts)
    try:
        pc.match_substring_regex(pa.array(["probe"]), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # too big for RE2: scan every document
        return None
    return pattern


def normalize_for_matching(texts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Lower-case, fold non-word runs to one space, separate Han from Latin/digits, pad with spaces."""
    norm = pc.utf8_lower(texts)
    norm = pc.replace_substring_regex(norm, _RE2_NON_WORD, " ")
    norm = pc.replace_substring_regex(norm, r"(\p{Han})([\p{Latin}\p{N}])", r"\1 \2")
    norm = pc.replace_substring_regex(norm, r"([\p{Latin}\p{N}])(\p{Han})", r"\1 \2")
    return pc.binary_join_element_wise(" ", norm, " ", "")


def word_units(normalized: pa.Array) -> np.ndarray:
    """Words per document, a CJK character counting as one word."""
    return pc.count_substring_regex(normalized, _RE2_UNITS).to_numpy(zero_copy_only=False)


def url_hosts(urls: pa.ChunkedArray | pa.Array) -> pa.Array:
    hosts = pc.struct_field(pc.extract_regex(pc.fill_null(urls, ""), _HOST_RE), "host")
    return pc.utf8_lower(hosts)


@dataclass
class DetoxParams:
    #: Built-in word lists (stages/data/wordlists/<lang>.txt, with <lang>_allow.txt); [] for none.
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    #: Extra word-list files (one term per line, "*" prefix/suffix wildcards for whole-word terms).
    wordlists: list[str] = field(default_factory=list)
    #: With a ``lang`` column (langid), match a built-in list only where its words are not ordinary words
    #: of the document's language (the English list skips other Latin-script languages). User lists
    #: always apply.
    respect_lang: bool = True
    #: Extra allow-list files: innocent compounds/phrases whose listed terms do not count.
    allowlists: list[str] = field(default_factory=list)
    #: Reject "detox:wordlist" when toxic_score (listed terms per word) is above this: 0.005 is one term in
    #: 200 words (a tweet or forum post with one slur, not a novel with one "damn"); 0 = any match (C4 rule).
    score_threshold: float = 0.005
    #: ... and at least this many listed terms were found.
    min_count: int = 1
    #: Files of blocked domains (one per line; a domain blocks its subdomains): reject "detox:url-blocklist".
    url_blocklists: list[str] = field(default_factory=list)
    #: Blocked domains given inline.
    blocked_domains: list[str] = field(default_factory=list)
    #: A fastText toxicity model (``curate detox train``): adds toxic_prob.
    model: str | None = None
    #: Reject "detox:classifier" when toxic_prob >= this.
    model_threshold: float = 0.5

    def validate(self) -> None:
        known = builtin_languages()
        for lang in self.languages:
            if lang not in known:
                raise ValueError(f"languages: no built-in word list {lang!r} (have: {', '.join(known)})")
        for name in ("wordlists", "allowlists", "url_blocklists"):
            for path in getattr(self, name):
                if not os.path.isfile(path):
                    raise ValueError(f"{name}: file not found: {path}")
        if self.model is not None and not os.path.isfile(self.model):
            raise ValueError(f"model: file not found: {self.model}")
        if self.score_threshold < 0:
            raise ValueError("score_threshold: must be >= 0")
        if self.min_count < 1:
            raise ValueError("min_count: must be >= 1")
        if not 0.0 <= self.model_threshold <= 1.0:
            raise ValueError("model_threshold: must be in [0, 1]")


def load_terms(params: DetoxParams) -> tuple[dict[str, list[str]], list[str]]:
    """Listed terms by group (built-in list language, "" for the user's lists) and allowed compounds,
    from the built-in and user files, traditional-script forms added."""
    groups, allowed = {}, []
    for lang in params.languages:
        groups[lang] = with_traditional(read_terms(WORDLIST_DIR / f"{lang}.txt"))
        allow_file = WORDLIST_DIR / f"{lang}_allow.txt"
        if allow_file.is_file():
            allowed += read_terms(allow_file)
    user = [t for path in params.wordlists for t in read_terms(path)]
    if user:
        groups[""] = with_traditional(user)
    for path in params.allowlists:
        allowed += read_terms(path)
    return groups, with_traditional(allowed)


def with_traditional(terms: list[str]) -> list[str]:
    han = [t for t in terms if _HAN_RE.search(t)]
    if not han:
        return terms
    from opencc import OpenCC

    to_traditional = OpenCC("s2t")
    extra = [v for v in (to_traditional.convert(t) for t in han) if v not in terms]
    return terms + sorted(set(extra))


class Detox(Stage):
    name = "detox"
    Params = DetoxParams
    outputs = (pa.field("toxic_score", pa.float32()), pa.field("toxic_count", pa.int32()),
               pa.field("toxic_terms", pa.list_(pa.string())), pa.field("toxic_prob", pa.float32()),
               pa.field("url_blocked", pa.bool_()))

    def output_fields(self) -> list[pa.Field]:
        """The word-list signals; ``toxic_prob`` with a model, ``url_blocked`` with a blocklist."""
        p = self.params
        unused = {"toxic_prob"} if not p.model else set()
        unused |= {"url_blocked"} if not (p.blocked_domains or p.url_blocklists) else set()
        return [f for f in self.outputs if f.name not in unused]

    def setup(self) -> None:
        terms, allowed = load_terms(self.params)
        self.matcher = TermMatcher(terms, allowed)
        domains = [normalize_domain(d) for d in self.params.blocked_domains]
        for path in self.params.url_blocklists:
            domains += read_domains(path)
        self.blocked = frozenset(d for d in domains if d)
        self.classifier = None
        if self.params.model:
            from curate.classifier import TextClassifier

            self.classifier = TextClassifier(self.params.model)

    def process(self, table: pa.Table) -> StageResult:
        self.ensure_setup()
        p = self.params
        n = table.num_rows
        texts = pc.fill_null(table["text"], "")
        counts = np.zeros(n, dtype=np.int32)
        scores = np.zeros(n, dtype=np.float32)
        found: list[list[str]] = [[] for _ in range(n)]
        if self.matcher.size and n:
            if self.matcher.prefilter is not None:
                maybe = pc.match_substring_regex(pc.utf8_lower(texts), self.matcher.prefilter)
                rows = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
            else:
                rows = np.arange(n)
            if len(rows):
                normalized = normalize_for_matching(texts.take(pa.array(rows)))
                units = np.maximum(word_units(normalized), 1)
                skips = self.skip_groups(table, rows)
                for j, padded in enumerate(normalized.to_pylist()):
                    counts[rows[j]], found[rows[j]] = self.matcher.find(padded, skips[j])
                scores[rows] = counts[rows] / units
        table = table.append_column("toxic_score", pa.array(scores, pa.float32()))
        table = table.append_column("toxic_count", pa.array(counts, pa.int32()))
        table = table.append_column("toxic_terms", pa.array(found, pa.list_(pa.string())))

        reasons = np.full(n, None, dtype=object)
        if self.classifier is not None:
            probs = self.classifier.score(texts.to_pylist())
            table = table.append_column("toxic_prob", pa.array(probs, pa.float32()))
            reasons[probs >= p.model_threshold] = "detox:classifier"
        if self.matcher.size:
            reasons[(counts >= p.min_count) & (scores > p.score_threshold)] = "detox:wordlist"
        if self.blocked:
            blocked = self.url_blocked(table["url"] if "url" in table.column_names else pa.nulls(n, pa.string()))
            table = table.append_column("url_blocked", pa.array(blocked, pa.bool_()))
            reasons[blocked] = "detox:url-blocklist"
        return StageResult(table, pa.array(reasons, pa.string()))

    def skip_groups(self, table: pa.Table, rows: np.ndarray) -> list[frozenset]:
        """Per selected row, the built-in lists not to match given the row's ``lang``."""
        if not self.params.respect_lang or "lang" not in table.column_names:
            return [frozenset()] * len(rows)
        cache: dict[str | None, frozenset] = {}
        out = []
        for lang in table["lang"].take(pa.array(rows)).to_pylist():
            if lang not in cache:
                code = (lang or "").lower().split("-")[0].split("_")[0]
                cache[lang] = frozenset(g for g, skip in LIST_NOT_FOR.items() if code in skip)
            out.append(cache[lang])
        return out

    def url_blocked(self, urls) -> np.ndarray:
        hosts = url_hosts(urls)
        if len(hosts) == 0:
            return np.zeros(0, dtype=bool)
        encoded = pc.dictionary_encode(pc.fill_null(hosts, "")).combine_chunks() if isinstance(
            hosts, pa.ChunkedArray) else pc.dictionary_encode(pc.fill_null(hosts, ""))
        verdicts = np.array([self.host_blocked(h) for h in encoded.dictionary.to_pylist()], dtype=bool)
        return verdicts[encoded.indices.to_numpy(zero_copy_only=False)] if len(verdicts) else np.zeros(len(hosts), bool)

    def host_blocked(self, host: str) -> bool:
        host = host.rstrip(".")
        while host:
            if host in self.blocked:
                return True
            host = host.partition(".")[2]
        return False


# ---------------------------------------------------------------- training


def read_labelled(path: str, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels from JSONL (``{"text": ..., "label": 0|1}``) or CSV with named columns.

    Raises ValueError naming the line for a missing column or a label that is not 0/1.
    """
    texts, labels = [], []

    def add(row: dict, where: str) -> None:
        if text_column not in row or label_column not in row:
            raise ValueError(f"{where}: needs columns {text_column!r} and {label_column!r}")
        label = str(row[label_column]).strip()
        if label not in ("0", "1", "True", "False", "true", "false"):
            raise ValueError(f"{where}: label must be 0 or 1, got {row[label_column]!r}")
        text = row[text_column]
        if not isinstance(text, str):
            raise ValueError(f"{where}: {text_column!r} must be a string")
        texts.append(text)
        labels.append(1 if label in ("1", "True", "true") else 0)

    is_csv = path.lower().endswith((".csv", ".tsv"))
    with open(path, encoding="utf-8-sig", newline="" if is_csv else None) as f:
        if is_csv:
            reader = csv.DictReader(f, delimiter="\t" if path.lower().endswith(".tsv") else ",")
            for number, row in enumerate(reader, start=2):
                add(row, f"{path}:{number}")
        else:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object")
                add(row, f"{path}:{number}")
    if not texts:
        raise ValueError(f"{path}: no examples")
    return texts, labels


def train_toxicity_model(input_path: str, output: str, options=None, *, text_column: str = "text",
                         label_column: str = "label"):
    """Train a fastText toxicity classifier (label 1 = toxic) from JSONL/CSV; returns a ``TrainReport``.

    ``options`` is a ``curate.classifier.TrainOptions`` (default: the small model,
    the minority label oversampled). Chinese text is split into characters by
    ``curate.classifier.prepare_text``, so ``word_ngrams=2`` gives character bigrams there.
    """
    from curate.classifier import train_classifier

    texts, labels = read_labelled(input_path, text_column, label_column)
    return train_classifier(texts, labels, output, options, names={1: "toxic", 0: "non-toxic"})
