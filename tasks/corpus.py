"""A user's corpus file (CSV, Parquet or JSONL) read into the frame every source yields.

Everything that can be refused without reading the data (extension, a folder,
an empty file) is checked by :func:`check_corpus_file`, which the command line
calls before Prefect starts. What is wrong inside a file is named by its line
or row: a CSV row with more fields than its header, a JSONL line that is not a
JSON object, a text cell that is a list or an object, a blank or repeated id.
"""

from __future__ import annotations

import csv
import json
import logging
import numbers
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.errors import InputError

log = logging.getLogger(__name__)

SEPARATORS = ",;\t|"
# Enough lines to guess a CSV's separator from; a text longer than this still leaves the header whole.
SNIFF_BYTES = 64 * 1024
# A corpus's other columns kept for the map's "Colour by column"; more would bloat every stored copy.
MAX_EXTRA_COLUMNS = 20


def sniff_separator(head: str) -> str:
    """The column separator of a CSV whose first characters are ``head``: one of ``,;<tab>|``.

    Column names rarely hold a separator, so the header line decides when it holds
    exactly one of them; when it holds several, :class:`csv.Sniffer` chooses among
    those; a header of one column (or none of them) gives ','.
    """
    header = head.split("\n", 1)[0]
    present = "".join(separator for separator in SEPARATORS if separator in header)
    if len(present) <= 1:
        return present or ","
    try:
        return csv.Sniffer().sniff(head, delimiters=present).delimiter
    except csv.Error:
        return ","


def _read_csv(path: Path, separator: str | None = None) -> pd.DataFrame:
    if separator is None:
        with path.open(encoding="utf-8", errors="replace", newline="") as handle:
            separator = sniff_separator(handle.read(SNIFF_BYTES))
    try:
        # A row with one field too many would silently become the index, and one too many fields
        # with index_col=False only warns: both are refused.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # Every cell as the text it is: no "007" -> 7, no "NA" or "null" -> missing; only an empty cell is missing.
            return pd.read_csv(
                path,
                sep=separator,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                index_col=False,
                encoding="utf-8",
                encoding_errors="replace",
            )
    except (pd.errors.ParserError, pd.errors.ParserWarning) as error:
        raise InputError(
            f"The corpus {path} could not be read as CSV with the separator {separator!r} "
            f"({_ragged_row(path, separator)}); quote texts that contain the separator, "
            "or pass --csv-separator with the right one."
        ) from error


def _ragged_row(path: Path, separator: str) -> str:
    """Where a CSV's rows stop having as many fields as its header, in words."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        rows = csv.reader(handle, delimiter=separator)
        header = next(rows, [])
        for row in rows:
            if len(row) > len(header):
                return f"line {rows.line_num} has {len(row)} fields, the header {len(header)}"
    return "its rows do not parse"


def _read_jsonl(path: Path, separator: str | None = None) -> pd.DataFrame:
    try:
        # JSON's own types only: no "00" -> 0, no dates parsed from columns with date-like names.
        return pd.read_json(path, lines=True, dtype=False, encoding="utf-8", encoding_errors="replace")
    except ValueError as error:
        line, problem = _first_bad_line(path)
        if line is None:
            raise
        raise InputError(
            f"Line {line} of the corpus {path} is not a JSON object ({problem}); fix or remove that line."
        ) from error


def _first_bad_line(path: Path) -> tuple[int | None, str]:
    """The number (from 1) of the first line of a JSONL file that is not a JSON object, and why."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                return number, f"{error.msg} at column {error.colno}"
            if not isinstance(value, dict):
                return number, f"a JSON {type(value).__name__} instead"
    return None, ""


def _read_parquet(path: Path, separator: str | None = None) -> pd.DataFrame:
    return pd.read_parquet(path)


CORPUS_READERS = {
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
}


def as_text(value: object) -> str | None:
    """A corpus cell as valid UTF-8 text, or None for a missing value.

    Bytes are decoded as UTF-8 with U+FFFD for invalid bytes; lone surrogates become U+FFFD.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace")


DOCUMENTS_COLUMNS = ("doc_id", "text", "label", "class_name")


def documents_frame(doc_ids, texts, labels, class_names) -> pd.DataFrame:
    """The frame every source yields: ``doc_id``, ``text`` (valid UTF-8), ``label``, ``class_name``."""
    return pd.DataFrame(
        {
            "doc_id": pd.Series(doc_ids, dtype="string"),
            "text": pd.Series([as_text(t) for t in texts], dtype="string"),
            "label": pd.Series(labels, dtype="Int32"),
            "class_name": pd.Series(class_names, dtype="string"),
        }
    )


def check_corpus_file(path: Path) -> Path:
    """Refuse a corpus path that cannot be read, before anything is read from it; returns the path.

    Checks the extension, that the path is a file (not a folder) and that it is
    not empty: what can be told without reading the data.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in CORPUS_READERS:
        raise InputError(
            f"The corpus {path} must be a .csv, .parquet or .jsonl file; got '{path.suffix or 'no extension'}'."
        )
    if path.is_dir():
        raise InputError(f"The corpus {path} is a folder; pass the corpus file itself with --corpus.")
    if not path.is_file():
        raise InputError(f"The corpus file {path} does not exist; check the --corpus path.")
    if path.stat().st_size == 0:
        raise InputError(f"The corpus {path} is empty; pass a file with at least one text.")
    return path


def _cell_kind(value: object) -> str | None:
    """None for a cell that reads as text (text, bytes, a number, missing); else what it is, in words."""
    if value is None or value is pd.NA or isinstance(value, str | bytes | numbers.Number | np.bool_):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a value of type {type(value).__name__}"


def _check_texts(texts: pd.Series, path: Path, column: str, *, what: str = "text") -> None:
    """Refuse a text (or label) column holding lists, objects or other values that are not text or numbers."""
    if texts.dtype != object:
        return
    kinds = texts.map(_cell_kind)
    if kinds.notna().any():
        row = int(np.flatnonzero(kinds.notna().to_numpy())[0])
        raise InputError(
            f"The {what} column {column!r} of {path} holds {kinds.iloc[row]} in row {row + 1}, not a "
            f"text; store each {what} as a string, or choose another --{what}-column."
        )


def _label_kind(value: object) -> str | None:
    """What a label cell holds: "text", "number", "boolean", or None when it is missing."""
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, numbers.Number):
        return "number"
    return "text"


def label_text(value: object) -> str:
    """A label cell as its class name: text as it is, ``true``/``false``, a number in its shortest form.

    A whole number is written without a decimal part, so ``1`` and ``1.0`` are
    the same class, as they are the same JSON or Parquet number.

    >>> [label_text(v) for v in ("1.0", 1, 1.0, 2.5, True, b"x")]
    ['1.0', '1', '1', '2.5', 'true', 'x']
    """
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return as_text(value) or ""


def read_labels(labels: pd.Series, path: Path, column: str, *, as_text: bool = False) -> pd.Series:
    """The class names of a label column (missing cells stay missing), read by one rule for every format.

    Text is read as it is; numbers and booleans by :func:`label_text`. A column
    mixing text, numbers and booleans (JSONL ``1`` and ``"1"``) is refused unless
    ``as_text`` (``--labels-as-text``), which reads every cell by :func:`label_text`,
    so ``1``, ``1.0`` and ``"1"`` become one class. A CSV cell is always text.
    """
    _check_texts(labels, path, column, what="label")
    kinds = [_label_kind(value) for value in labels]
    present = pd.Series(kinds, index=labels.index, dtype=object).dropna()
    if not as_text and present.nunique() > 1:
        rows = [int(present[present == kind].index[0]) for kind in sorted(present.unique())]
        examples = ", ".join(f"{labels.iloc[row]!r} in row {row + 1}" for row in rows)
        raise InputError(
            f"The label column {column!r} of {path} mixes {' and '.join(sorted(present.unique()))} "
            f"({examples}); store every label the same way, or pass --labels-as-text to read each as "
            "text (1, 1.0 and '1' then become one class)."
        )
    names = [None if kind is None else label_text(value) for value, kind in zip(labels, kinds, strict=True)]
    return pd.Series(names, index=labels.index, dtype="string")


def extra_columns(frame: pd.DataFrame, used: set[str | None]) -> dict[str, pd.Series]:
    """The corpus's other columns (the first :data:`MAX_EXTRA_COLUMNS`), each read as text like a label.

    ``used`` are the text, label and id columns. Cells are written by :func:`label_text`
    (missing cells stay missing). Left out: a column holding lists, objects or other values
    that are not text or numbers, and one named like a column of :func:`documents_frame`.
    """
    names = [
        name
        for name in frame.columns
        if name not in used
        and str(name) not in DOCUMENTS_COLUMNS
        and not frame[name].map(_cell_kind).notna().any()
    ]
    if len(names) > MAX_EXTRA_COLUMNS:
        log.info(
            "ingest: keeping the first %d of the corpus's %d other columns", MAX_EXTRA_COLUMNS, len(names)
        )
    return {
        str(name): pd.Series(
            [None if _label_kind(value) is None else label_text(value) for value in frame[name]],
            dtype="string",
        )
        for name in names[:MAX_EXTRA_COLUMNS]
    }


def _check_ids(ids: pd.Series, path: Path, column: str) -> pd.Series:
    """The ids as strings; refuses a blank or repeated id."""
    blank = ids.isna() | (ids.astype(str).str.strip() == "")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0])
        raise InputError(
            f"The id column {column!r} of {path} is blank in row {row + 1}; give every row an id, "
            "or leave --id-column out to number the rows."
        )
    ids = ids.astype(str)
    if ids.duplicated().any():
        repeated = ids[ids.duplicated()].iloc[0]
        raise InputError(
            f"The id column {column!r} of {path} repeats the id {repeated!r}; ids must be unique."
        )
    return ids


def load_corpus(
    path: Path,
    *,
    text_column: str = "text",
    label_column: str | None = None,
    id_column: str | None = None,
    csv_separator: str | None = None,
    labels_as_text: bool = False,
) -> pd.DataFrame:
    """Load a user's corpus from CSV, Parquet or JSONL.

    ``label_column`` None means: use a column called ``label`` if there is one,
    else treat the corpus as unlabelled. Classes are numbered in sorted order of
    their names. ``csv_separator`` None guesses a CSV's separator from its first
    lines. Texts must be strings or numbers; bytes are decoded as UTF-8. Labels
    are read by :func:`read_labels` (``labels_as_text``: ``--labels-as-text``).
    The corpus's other columns follow the frame's own, as text (:func:`extra_columns`).
    """
    path = check_corpus_file(path)
    reader = CORPUS_READERS[path.suffix.lower()]
    try:
        frame = reader(path, csv_separator)
    except InputError:
        raise
    except (ValueError, OSError, UnicodeError) as error:
        raise InputError(f"The corpus {path} could not be read as {path.suffix} ({error}).") from error
    if frame.empty:
        raise InputError(f"The corpus {path} has no rows; pass a file with at least one text.")
    columns = ", ".join(repr(str(c)) for c in frame.columns)
    for option, column in (
        ("--text-column", text_column),
        ("--label-column", label_column),
        ("--id-column", id_column),
    ):
        if column is not None and column not in frame.columns:
            raise InputError(
                f"The corpus {path} has no column {column!r} ({option}); its columns are {columns}."
            )
    if label_column is None and "label" in frame.columns:
        label_column = "label"
        log.info("ingest: using column 'label' as the true classes")
    doc_ids = frame.index.astype(str) if id_column is None else _check_ids(frame[id_column], path, id_column)
    texts = frame[text_column]
    _check_texts(texts, path, text_column)
    extra = extra_columns(frame, {text_column, label_column, id_column})
    if label_column is None:
        return documents_frame(doc_ids, texts, [pd.NA] * len(frame), [pd.NA] * len(frame)).assign(**extra)
    names = read_labels(
        frame[label_column].reset_index(drop=True), path, label_column, as_text=labels_as_text
    )
    names.index = frame.index
    classes = sorted(names.dropna().unique())
    codes = names.map({name: code for code, name in enumerate(classes)}).astype("Int32")
    return documents_frame(doc_ids, texts, codes, names).assign(**extra)
