"""``clinfm concepts``: embed a vocabulary's code descriptions and look up nearest codes.

Registered in clinfm/cli.py with ``app.add_typer(concepts_app, name="concepts")``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from clinfm.cli_common import user_facing
from clinfm.errors import InputError
from clinfm.io import write_parquet_atomic

concepts_app = typer.Typer(
    help="Concept embeddings: place codes from any site or coding system in one space by their text.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)
ENCODER_META = b"clinfm.encoder"


def read_code_list(path: Path) -> tuple[list[str], Path | None]:
    """Codes from a text file (one per line) or a MEDS folder (its codes.parquet and every event code)."""
    if path.is_dir():
        from clinfm.events.meds import read_codes, scan_events

        events = scan_events(path, columns=["code"]).select(pl.col("code").cast(pl.String)).unique()
        codes = pl.concat([read_codes(path).select(pl.col("code").cast(pl.String)), events.collect()])
        return codes["code"].drop_nulls().unique(maintain_order=True).sort().to_list(), path
    if not path.is_file():
        raise InputError("no such file or MEDS folder", path=path)
    lines = [line.strip() for line in path.read_text().splitlines()]
    codes = list(dict.fromkeys(line for line in lines if line and not line.startswith("#")))
    if not codes:
        raise InputError("holds no codes; expected one code per line", path=path)
    return codes, None


@concepts_app.command()
@user_facing
def embed(
    codes: Path = typer.Option(..., "--codes", help="A text file with one code per line, or a MEDS folder."),
    out: Path = typer.Option(..., "--out", help="Parquet file to write (code, text, source, embedding)."),
    encoder: str = typer.Option(
        "default", help="default | st:<id-or-path> | hf:<id-or-path>[#cls|#mean] | openai:<model>@<url>"
    ),
    descriptions: Path | None = typer.Option(
        None, help="CSV with columns code,description; preferred over every other source."
    ),
    cache: Path | None = typer.Option(
        None, help="Embedding cache folder (default $CLINFM_CACHE or ~/.cache)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the embedding cache."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Embed each code's description (dataset metadata, clinfm's ICD titles, or your CSV)."""
    from clinfm.concepts.cache import embed_texts
    from clinfm.concepts.encoders import load_encoder
    from clinfm.concepts.texts import code_texts

    if out.exists() and (not overwrite or out.is_dir()):
        raise InputError("output already exists; choose another path or pass --overwrite", path=out)
    model = load_encoder(encoder)  # a bad spec fails before any data is read
    code_list, dataset = read_code_list(codes)
    texts = code_texts(code_list, dataset=dataset, csv=descriptions)
    store = False if no_cache else (cache if cache is not None else True)
    vectors = embed_texts(model, texts["text"].to_list(), cache=store, description="embedding")
    frame = texts.with_columns(pl.Series("embedding", vectors).cast(pl.Array(pl.Float32, vectors.shape[1])))
    write_parquet_atomic(frame, out, metadata={ENCODER_META: model.name.encode()})
    counts = dict(frame.group_by("source").len().iter_rows())
    console.print(f"wrote {out}: {frame.height} codes x {vectors.shape[1]} ({model.name}); sources {counts}")


def read_embeddings(path: Path) -> tuple[pl.DataFrame, np.ndarray]:
    """A file written by ``concepts embed``: the table and its vectors [n, dim]."""
    if not path.is_file():
        raise InputError("no such embeddings file", path=path)
    frame = pl.read_parquet(path)
    missing = {"code", "embedding"} - set(frame.columns)
    if missing:
        raise InputError(f"not a concepts embeddings file; missing columns {sorted(missing)}", path=path)
    column = frame["embedding"]
    if not isinstance(column.dtype, pl.Array | pl.List) or not column.dtype.inner.is_numeric():
        raise InputError(f"the embedding column holds {column.dtype}, not vectors of numbers", path=path)
    if column.list.len().n_unique() > 1 if isinstance(column.dtype, pl.List) else False:
        raise InputError("the embedding vectors differ in length", path=path)
    vectors = np.asarray(column.to_list(), dtype=np.float32).reshape(frame.height, -1)
    return frame, vectors


@concepts_app.command()
@user_facing
def neighbors(
    code: str = typer.Argument(..., help="The code to look up, as written in the embeddings file."),
    embeddings: list[Path] = typer.Option(
        ...,
        "--embeddings",
        help="Parquet file from `clinfm concepts embed`; repeat to search several sites' codes at once.",
    ),
    k: int = typer.Option(10, "-k", min=1, help="How many neighbours."),
):
    """The codes nearest to CODE by cosine similarity of their description embeddings."""
    from clinfm.concepts.texts import neighbors as nearest

    frames, blocks, encoders = [], [], {}
    for path in embeddings:
        frame, vectors = read_embeddings(path)
        encoders[path] = (pq.read_schema(path).metadata or {}).get(ENCODER_META, b"?").decode()
        text = pl.col("text") if "text" in frame.columns else pl.lit("").alias("text")
        frames.append(frame.select("code", text, pl.lit(str(path)).alias("file")))
        blocks.append(vectors)
    if len(set(encoders.values())) > 1:  # vectors of two encoders live in unrelated spaces
        raise InputError(f"the embeddings files come from different encoders: {encoders}")
    if len({b.shape[1] for b in blocks}) > 1:
        raise InputError("the embeddings files hold vectors of different lengths")
    frame = pl.concat(frames).with_row_index("row").unique("code", keep="first", maintain_order=True)
    vectors = np.concatenate(blocks)[frame["row"].to_numpy()]  # a code two sites share is listed once
    found = nearest(code, frame["code"], vectors, k)
    found = found.join(frame.drop("row"), on="code", how="left", maintain_order="left")
    encoder = next(iter(encoders.values()))
    table = Table("code", "description", "cosine", title=f"nearest to {code} ({encoder})")
    if len(embeddings) > 1:
        table.add_column("file")
    for row, description, cosine, file in found.select("code", "text", "cosine", "file").iter_rows():
        table.add_row(row, description or "", f"{cosine:.3f}", *([file] if len(embeddings) > 1 else []))
    console.print(table)
