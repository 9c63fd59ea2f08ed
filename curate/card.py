"""``curate card OUT``: a Hugging Face dataset card (``OUT/README.md``) for a run's output folder.

The Hub and ``datasets.load_dataset(OUT)`` read a folder's ``README.md``. Its YAML
header says which files form which config (``docs/*.parquet`` is the default one,
``rejects`` and ``stats`` the others) and their features. The body gives a reader
what they need to judge the data: where it came from, what each stage removed
and why, the languages, the exact pipeline and the package versions. Everything
comes from the folder itself (``manifest.json``, ``stats/`` and the shards'
Parquet footers), so a card can be rewritten at any time.

A run in an object store (``curate card s3://bucket/run/``) is described in place: the footers are
read by range requests, the funnel through DuckDB with the store's client (``curate.stats``), and
the card is written beside the data as ``s3://bucket/run/README.md``, where a copy of the folder
(``aws s3 sync``) or an upload from it finds it.

The licence is not decided here. curate cannot know the terms of the inputs, so
the ``license`` field says ``unknown`` until the user sets it (``--license``). The
upload (``huggingface_hub``'s ``upload_folder``) stays the user's step.
"""

from __future__ import annotations

import glob
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import click
import pyarrow as pa
import yaml

from curate import __version__, storage
from curate.output_schema import origins

MARKER = "<!-- written by `curate card`: rerun it to refresh; edit freely, then remove this line to keep your edits -->"
CONFIGS = (("default", "docs"), ("rejects", "rejects"), ("stats", "stats"))
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"),
                   (1_000_000_000_000, "100B<n<1T")]
#: Parquet footers read at once from an object store (as the runner's row count at the end of a run).
FOOTERS_IN_FLIGHT = 16
#: What the core columns hold (the others are described in curate's docs/schema.md).
CORE_MEANINGS = {
    "id": "stable id: the input's own, or a hash of the source and the document's place in its input",
    "source": "the input the document came from",
    "text": "the document text",
    "url": "URL of web documents",
    "path": "the input file (for code: the path inside the repository or archive)",
    "reject_stage": "the stage that dropped the document",
    "reject_reason": "why it was dropped: the rule that fired",
    "given_id": "the id the input gave a document whose id another document also had (it got a new id)",
}


class CardError(ValueError):
    """The folder is not a finished curate output, or holds a README.md that curate did not write."""


@dataclass
class Part:
    """One config of the card: a folder of shards, their common schema and their size."""

    name: str
    folder: str
    schema: pa.Schema | None
    rows: int
    num_bytes: int      # uncompressed, from the Parquet footers
    download_size: int  # the files on disk (or the objects in the store)
    files: int
    schemas: int        # distinct schemas among the files (1 when every shard agrees)


def _part(output: str, name: str, folder: str) -> Part:
    pattern = storage.join(output if storage.is_remote(output) else glob.escape(output), folder, "*.parquet")
    files = storage.glob_info(pattern)  # one listing, with the sizes
    # each footer is a few requests in a store: FOOTERS_IN_FLIGHT at a time (locally one after another)
    with ThreadPoolExecutor(FOOTERS_IN_FLIGHT if storage.is_remote(output) else 1) as pool:
        footers = list(pool.map(storage.footer, [path for path, _, _ in files]))
    schemas: list[pa.Schema] = []
    rows = num_bytes = size = 0
    for (_, file_size, _), (schema, meta) in zip(files, footers):  # the types pyarrow, and so datasets, reads
        if not any(schema.equals(s) for s in schemas):
            schemas.append(schema)
        rows += meta.num_rows
        num_bytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        size += file_size
    distinct = len(schemas)
    if distinct > 1:  # an output written before one schema per folder: describe the union
        schemas = [pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")]
    return Part(name, folder, schemas[0] if schemas else None, rows, num_bytes, size, len(files), distinct)


# ---- features, as datasets writes them (``Features._to_yaml_list``) -------------------------------------------

def _feature_type(tp: pa.DataType) -> dict:
    if pa.types.is_list(tp) or pa.types.is_large_list(tp):
        inner = _feature_type(tp.value_type)
        key = "large_list" if pa.types.is_large_list(tp) else "list"
        if set(inner) == {"dtype"}:
            return {key: inner["dtype"]}
        return {key: inner["struct"] if "struct" in inner else inner}
    if pa.types.is_struct(tp):
        return {"struct": [{"name": f.name, **_feature_type(f.type)} for f in tp]}
    if pa.types.is_timestamp(tp):
        return {"dtype": f"timestamp[{tp.unit}" + (f", tz={tp.tz}]" if tp.tz else "]")}
    if pa.types.is_dictionary(tp):
        return _feature_type(tp.value_type)
    names = {pa.string(): "string", pa.large_string(): "large_string", pa.utf8(): "string", pa.bool_(): "bool",
             pa.binary(): "binary", pa.large_binary(): "large_binary", pa.null(): "null", pa.date32(): "date32",
             pa.date64(): "date64", pa.float16(): "float16", pa.float32(): "float32", pa.float64(): "float64"}
    if tp in names:
        return {"dtype": names[tp]}
    return {"dtype": str(tp)}  # int8 … uint64: the same names in datasets


def features(schema: pa.Schema) -> list[dict]:
    return [{"name": field.name, **_feature_type(field.type)} for field in schema]


# ---- the card -----------------------------------------------------------------------------------------------

def _cell(value) -> str:
    """A table cell: text from the data is never markup (no HTML, links, emphasis or broken columns)."""
    text = "" if value is None else str(value)
    for char, escaped in (("\\", "\\\\"), ("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "\\`"),
                          ("*", "\\*"), ("[", "\\["), ("]", "\\]"), ("#", "\\#")):
        text = text.replace(char, escaped)
    text = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)  # intraword _ is never emphasis
    return " ".join(text.split())


def type_name(feature: dict) -> str:
    """A feature as a short type name: ``string``, ``list<string>``, ``struct<reason, docs>``."""
    if "dtype" in feature:
        return feature["dtype"]
    for key in ("list", "large_list"):
        if key in feature:
            inner = feature[key]
            inner = inner if isinstance(inner, str) else type_name({"struct": inner} if isinstance(inner, list)
                                                                     else inner)
            return f"{key}<{inner}>"
    return "struct<" + ", ".join(f["name"] for f in feature["struct"]) + ">"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _fenced(text: str, lang: str) -> list[str]:
    """A code block whose fence no backtick run inside ``text`` can close."""
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return [fence + lang, text, fence]


def _yaml(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip()


def _size_category(rows: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if rows < limit:
            return name
    return "n>1T"


def _mb(n: int | float) -> str:
    return f"{n / 1e6:,.2f} MB"


def _resolved_stages(manifest: dict) -> list[dict]:
    """Every stage's parameters with the defaults filled in, as this curate version reads the config."""
    from curate.params import ConfigError
    from curate.stage import stage_class

    out = []
    for spec in manifest.get("config", {}).get("stages", []):
        name, raw = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
        raw = dict(raw or {})
        for key in ("sources", "skip_sources"):
            raw.pop(key, None)
        try:
            out.append({"stage": name, "params": stage_class(name).from_config(raw).describe()["params"]})
        except (ConfigError, ImportError, ValueError, OSError):
            out.append({"stage": name, "params": raw})  # a stage this environment cannot load: as written
    return out


def check_output(output: str) -> dict:
    """The manifest of a finished run in ``output``; a ``NotAnOutput`` (not a run: ``curate.stats.read_manifest``,
    the check every command that reads a run makes) or a ``CardError`` (not finished) otherwise."""
    from curate.stats import MANIFEST, read_manifest

    manifest = read_manifest(output)
    if not manifest.get("complete"):
        raise CardError(f"{storage.join(output, MANIFEST)}: the run is not complete (rerun the same `curate run` "
                        "to finish it before describing it)")
    return manifest


def build_card(output: str, *, license: str | None = None, pretty_name: str | None = None) -> tuple[str, dict]:
    """The README.md text for ``output`` and a summary of what it says."""
    from curate import stats

    output = storage.normalize(output)
    manifest = check_output(output)
    parts = [_part(output, name, folder) for name, folder in CONFIGS]
    docs = parts[0]
    con = stats.connect(output)
    funnel = stats.funnel(con)
    languages = stats.by_language(con)
    has_lang = docs.schema is not None and "lang" in docs.schema.names
    kept_langs = [lang for lang, in con.execute(
        "SELECT lang FROM docs WHERE lang IS NOT NULL GROUP BY lang ORDER BY count(*) DESC, lang").fetchall()] \
        if has_lang else []
    formats = {i["source"]: i.get("format") for i in manifest.get("inputs", [])}
    if "code" in formats.values():
        kept_langs.append("code")
    name = pretty_name or storage.basename(output)
    per_source = con.execute("""
        SELECT source, sum(kept)::BIGINT, sum(rejected)::BIGINT, sum(text_bytes)::BIGINT FROM (
            SELECT source, 1 AS kept, 0 AS rejected, strlen(text) AS text_bytes FROM docs
            UNION ALL SELECT source, 0, 1, 0 FROM rejects) GROUP BY source""").fetchall()
    per_source = {s: (k, r, b or 0) for s, k, r, b in per_source}

    header = {
        "pretty_name": name,
        "license": license or "unknown",
        "language": kept_langs or None,
        "task_categories": ["text-generation"],
        "tags": ["pretraining", "curate"],
        "size_categories": [_size_category(docs.rows)],
        "configs": [{"config_name": p.name, "data_files": [{"split": "train", "path": f"{p.folder}/*.parquet"}],
                     **({"default": True} if p.name == "default" else {})} for p in parts if p.files],
        "dataset_info": [{"config_name": p.name, "features": features(p.schema),
                          "splits": [{"name": "train", "num_bytes": p.num_bytes, "num_examples": p.rows}],
                          "download_size": p.download_size, "dataset_size": p.num_bytes}
                         for p in parts if p.files],
    }
    header = {k: v for k, v in header.items() if v is not None}
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000).rstrip(), "---", "",
             MARKER, "", f"# {_cell(name)}", ""]
    text_bytes = sum(b for _, _, b in per_source.values())
    lines += [f"Pre-training text curated with curate "
              f"{_cell(manifest.get('curate_version', __version__))}, run finished "
              f"{_cell(manifest.get('finished', '?'))}: **{docs.rows:,} documents kept** "
              f"({_mb(text_bytes)} of text) in `docs/`, and **{parts[1].rows:,} rejected** in `rejects/`. Each "
              "rejected document keeps every column, plus the stage and the reason that dropped it. Signals are "
              "stored on kept and rejected documents alike, so a threshold can be tried again without "
              "recomputing anything.", ""]
    lines += ["## Loading", "", "```python", "from datasets import load_dataset", "",
              'docs = load_dataset("PATH_OR_REPO", split="train")                # docs/*.parquet',
              'rejects = load_dataset("PATH_OR_REPO", "rejects", split="train")  # rejects/*.parquet', "```", "",
              "Every shard of a folder has the same columns and types, so `polars.read_parquet(\"docs/*.parquet\")`, "
              "`pyarrow.dataset.dataset(\"docs\")` and DuckDB's `read_parquet('docs/*.parquet')` read them whole. "
              "A column is null where its stage did not apply to a document's source.", ""]
    lines += ["## Sources", ""]
    source_rows = []
    for entry in manifest.get("inputs", []):
        source = entry["source"]
        kept, rejected, kbytes = per_source.get(source, (0, 0, 0))
        files = entry.get("files", [])
        source_rows.append([source, entry.get("format"), len(files), _mb(sum(f.get("bytes", 0) for f in files)),
                            f"{kept:,}", _mb(kbytes), f"{rejected:,}"])
    lines += _table(["source", "format", "input files", "input size", "docs kept", "text kept", "rejected"],
                    source_rows) + [""]
    lines += ["## What each stage did", "",
              "Per source and stage, in pipeline order. *kept* is the share of the documents that entered the "
              "stage and were neither rejected nor skipped; *skipped* are records a reader leaves out on purpose "
              "(WARC requests, images, vendored code).", ""]
    lines += _table(["source", "stage", "docs in", "docs out", "kept", "rejected", "skipped", "top reasons"],
                    [[s, st, f"{di:,}", f"{do:,}", "" if share is None else f"{share:.1%}", f"{rej:,}",
                      f"{sk:,}", reasons] for s, st, di, do, _, _, share, rej, sk, _, reasons in funnel]) + [""]
    lines += ["## Languages", ""]
    if has_lang:
        lines += ["From fastText's lid.176 (the `lang` column; `?` where language ID did not run, as for code).", ""]
        lines += _table(["source", "lang", "kept", "rejected"],
                        [[s, lang, f"{k:,}", f"{r:,}"] for s, lang, k, r, _ in languages]) + [""]
    else:
        lines += ["This run has no language-ID stage.", ""]
    lines += ["## Columns", "",
              "Of `docs/`, with the reader or stage that adds each one. `rejects/` has these columns, plus any "
              "that a later stage removes (such as `html`), then `reject_stage`, `reject_reason` and "
              "`error_traceback`. Every signal column is described in curate's `docs/schema.md`.", ""]
    added_by = origins(docs.schema) if docs.schema is not None else {}
    lines += _table(["column", "type", "added by", "meaning"],
                    [[f["name"], type_name(f), added_by.get(f["name"], ""), CORE_MEANINGS.get(f["name"], "")]
                     for f in (features(docs.schema) if docs.schema else [])]) + [""]
    lines += ["## The pipeline", "",
              "As written (`manifest.json` holds it too). Input paths are as they were given to `curate run`: "
              "edit them before publishing if they are private.", "",
              *_fenced(_yaml(manifest.get("config", {})), "yaml"),
              "", "Every stage's parameters, defaults included:", "",
              *_fenced(_yaml(_resolved_stages(manifest)), "yaml"),
              ""]
    lines += ["## Versions", ""]
    lines += _table(["package", "version"], sorted(manifest.get("versions", {}).items())) + [""]
    lines += ["## Licence", "",
              "**Set the `license` field in the header above before publishing.** The documents keep the "
              "licences and terms of use of their sources, listed under *Sources*. curate does not know them, "
              "so the field says `unknown`.", ""]
    summary = {"output": output, "readme": storage.join(output, "README.md"), "license": header["license"],
               "languages": kept_langs, "configs": {p.name: {"files": p.files, "rows": p.rows, "schemas": p.schemas}
                                                    for p in parts}}
    return "\n".join(lines), summary


def write_card(output: str, *, license: str | None = None, pretty_name: str | None = None,
               overwrite: bool = False) -> dict:
    """Write ``OUTPUT/README.md``; a README.md that ``curate card`` did not write is kept unless ``overwrite``."""
    text, summary = build_card(output, license=license, pretty_name=pretty_name)
    path = summary["readme"]
    if not overwrite and storage.exists(path):
        if MARKER not in storage.read_bytes(path).decode("utf-8", errors="replace"):
            raise CardError(f"{path}: exists and was not written by `curate card` (or its marker line was "
                            "removed to keep edits); pass --overwrite to replace it")
    storage.write_bytes(path, text.encode("utf-8"))  # whole or not there: a rename, or one PUT
    return summary


@click.command("card")
@click.argument("output", type=click.Path())
@click.option("--license", "license_", help="The dataset's licence id for the header (default: unknown).")
@click.option("--name", "pretty_name", help="The dataset's name (default: the folder's name).")
@click.option("--overwrite", is_flag=True, help="Replace a README.md that curate did not write.")
def card(output, license_, pretty_name, overwrite):
    """Write OUTPUT/README.md: a Hugging Face dataset card for a finished run's output folder.

    \b
    OUTPUT may be in an object store (s3://bucket/run/): the card is written there, beside the data.

    \b
    The YAML header names the configs (docs, rejects, stats) and their features, so
    datasets.load_dataset(OUTPUT) and the Hub read the folder as it is. The body gives
    the funnel per source and stage, the languages, the pipeline and the versions.
    The licence is yours to set (--license). Uploading stays your step:
    huggingface_hub.upload_folder(folder_path=OUTPUT, repo_id=..., repo_type="dataset").
    """
    from curate.stats import NotAnOutput

    try:
        summary = write_card(output, license=license_, pretty_name=pretty_name, overwrite=overwrite)
    except (CardError, NotAnOutput) as err:  # click's one line (a rich console would wrap a long path)
        error = click.ClickException(str(err))
        error.exit_code = 2
        raise error from None
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    for name, part in summary["configs"].items():
        if part["schemas"] > 1:
            click.echo(f"warning: {name}: the shards have {part['schemas']} different schemas; tools that take one "
                       "file's schema (datasets, pyarrow.dataset) will fail or drop columns. Rerun with a curate "
                       "that writes one schema per folder.", err=True)
