"""What an import should do: the ``ImportSpec`` boundary model (built by the CLI, the HTTP API and the
demo's ``import.yaml``), and the label maps it carries.

``rating_cols`` maps *column -> dimension* (``{"Q_overall": "safety"}``); a list or a single name keeps the
column name as the dimension. ``label_map`` is ``{label: number}``, the string ``"No=0, Unsure=0.5, Yes=1"``,
or per dimension ``{dimension: {label: number} | "No=0, ..."}``; a label may map to ``null`` (stored with
value NULL). ``annotator_columns`` (wide layout) is a list of column names, a comma-separated string of
names, a glob such as ``rater_*``, or a regular expression (prefix ``re:``, or any string containing one of
``^$+(){}|\\``) that must match the whole column name.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import Any, Literal

import re2
import yaml
from accord.models.import_formats import DatasetImportError, one_line
from accord.models.limits import get_limits
from accord.models.yaml_loader import safe_load
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LabelMap = dict[str, float | None]
# Item metadata that drives analyses, by the name the analysis suite reads (``--meta-role ROLE=COLUMN``).
META_ROLES = {
    "subject_model": "the model whose output is rated (ranking of subject models)",
    "category": "a category of items (every metric per category)",
    "expert_label": "a gold/expert label (accuracy, precision, recall, F1 against it)",
}
_NULL_WORDS = {"null", "none", "nan"}
_REGEX_CHARS = set("^$+(){}|\\")


def normalize_label(text: str) -> str:
    """The case- and whitespace-insensitive form of a label."""
    return " ".join(text.split()).casefold()


def _label_value(label: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"label {label!r}: value {value!r} is not a number")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.casefold() in _NULL_WORDS:
            return None
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"label {label!r}: value {value!r} is not a number") from None
    else:
        raise ValueError(f"label {label!r}: value {value!r} is not a number")
    if not math.isfinite(number):
        raise ValueError(f"label {label!r}: value {value!r} is not a finite number")
    return number


def parse_label_map_string(text: str) -> LabelMap:
    """``"No=0, Unsure=0.5, Yes=1"`` -> ``{"No": 0.0, "Unsure": 0.5, "Yes": 1.0}``.

    Pairs are separated by commas (or by semicolons, if any is present, so that labels may hold commas);
    ``label=null`` maps a label to no value."""
    separator = ";" if ";" in text else ","
    result: LabelMap = {}
    for part in text.split(separator):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"cannot read {part.strip()!r}: expected label=number, as in 'No=0, Yes=1'")
        label, value = part.rsplit("=", 1)
        label = label.strip()
        if not label:
            raise ValueError(f"cannot read {part.strip()!r}: empty label")
        if label in result:
            raise ValueError(f"label {label!r} is given twice")
        result[label] = _label_value(label, value)
    if not result:
        raise ValueError("the label map is empty")
    return result


def _flat_label_map(raw: Any) -> LabelMap:
    if isinstance(raw, str):
        return parse_label_map_string(raw)
    if isinstance(raw, dict):
        if not raw:
            raise ValueError("the label map is empty")
        return {str(label): _label_value(str(label), value) for label, value in raw.items()}
    raise ValueError(f"expected a mapping or a 'label=number, ...' string, got {type(raw).__name__}")


def _check_unambiguous(label_map: LabelMap, where: str) -> None:
    seen: dict[str, str] = {}
    for label, value in label_map.items():
        key = normalize_label(label)
        if key in seen and label_map[seen[key]] != value:
            raise ValueError(
                f"{where}labels {seen[key]!r} and {label!r} differ only in case/spacing but map to "
                f"different values"
            )
        seen.setdefault(key, label)


def resolve_label_maps(raw: Any, dimensions: list[str]) -> dict[str, LabelMap]:
    """The label map of each dimension that has one, from any accepted form of ``label_map``."""
    if raw is None:
        return {}

    def is_map(value: Any) -> bool:
        return isinstance(value, dict) or (isinstance(value, str) and "=" in value)

    per_dimension = isinstance(raw, dict) and bool(raw) and all(is_map(v) for v in raw.values())
    mixed = isinstance(raw, dict) and any(is_map(v) for v in raw.values()) and not per_dimension
    if mixed:
        raise ValueError(
            "mixes per-dimension maps with label values; give {label: number} or {dimension: {...}}"
        )
    if per_dimension:
        unknown = [d for d in raw if d not in dimensions]
        if unknown:
            raise ValueError(
                f"names dimension {unknown[0]!r}, but the dimensions are: {', '.join(dimensions) or '(none)'}"
            )
        maps = {str(dim): _flat_label_map(value) for dim, value in raw.items()}
    else:
        flat = _flat_label_map(raw)
        maps = {dim: dict(flat) for dim in dimensions} if dimensions else {"": flat}
    for dim, label_map in maps.items():
        _check_unambiguous(label_map, f"dimension {dim!r}: " if dim else "")
    return {dim: m for dim, m in maps.items() if dim}


def match_columns(pattern: str | list[str], columns: list[str]) -> list[str]:
    """The columns named by an ``annotator_columns`` value, in file order (explicit lists keep their order)."""
    if isinstance(pattern, list):
        return list(pattern)
    text = pattern.strip()
    if is_regex(text):
        regex = compile_column_regex(text)
        return [c for c in columns if regex.fullmatch(c)]
    if any(ch in text for ch in "*?["):
        return [c for c in columns if fnmatch.fnmatchcase(c, text)]
    return [part.strip() for part in text.split(",") if part.strip()]


def is_regex(text: str) -> bool:
    return text.startswith("re:") or any(ch in _REGEX_CHARS for ch in text)


def compile_column_regex(text: str) -> Any:
    """An ``annotator_columns`` regular expression, compiled with RE2: matching takes time linear in the
    column name whatever the pattern (no catastrophic backtracking). Patterns are bounded in length;
    RE2 has no backreferences or lookaround. Raises ``ValueError`` naming the problem."""
    source = text.strip().removeprefix("re:")
    limit = get_limits().max_regex_chars
    if len(source) > limit:
        raise ValueError(f"annotator_columns: the pattern is longer than {limit} characters")
    options = re2.Options()
    options.max_mem = 8 << 20
    options.log_errors = False
    try:
        return re2.compile(source, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(f"annotator_columns: not a usable regular expression ({one_line(reason)[:120]}); "
                         "backreferences and lookaround are not supported") from None


def _split_names(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ImportSpec(BaseModel):
    """Everything ``import_dataset`` needs: files, layout, column mapping, label map."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Dataset name, unique per project.")
    description: str = ""
    project_id: int | None = None
    replace: bool = Field(False, description="Replace an existing dataset of this name (not if it has runs).")

    ratings_file: Path | None = None
    items_file: Path | None = None
    annotators_file: Path | None = None

    layout: Literal["long", "wide"] = "long"
    item_col: str = "item_id"
    annotator_col: str = Field(
        "annotator_id", description="Annotator id column (ratings file in long layout; annotators file)."
    )
    rating_cols: str | list[str] | dict[str, str] | None = Field(
        None, description="column -> dimension (long layout)."
    )
    annotator_columns: str | list[str] | None = Field(
        None, description="Wide layout: rating columns, one per annotator."
    )
    dimension: str = Field(
        "rating", min_length=1, max_length=200, description="Wide layout: the dimension's name."
    )

    text_col: str | None = None
    conversation_col: str | None = None
    response_col: str | None = None
    response_speaker: str | None = None
    item_meta_cols: list[str] = Field(default_factory=list)
    attribute_cols: list[str] = Field(default_factory=list)

    label_map: str | dict[str, Any] | None = None
    model_rating_cols: dict[str, str] = Field(
        default_factory=dict, description="An existing judge model's labels per item: rater name -> column "
                                          "(mapped like the human ratings of the dataset's one dimension).")
    missing_labels: list[str] = Field(default_factory=lambda: ["", "NA"])

    records_key: str | None = Field(None, description="JSON files: the key holding the list of records.")
    items_id_col: str | None = Field(None, description="Item id column of the items file (default: item_col).")
    annotators_id_col: str | None = Field(
        None, description="Annotator id column of the annotators file (default: annotator_col)."
    )
    on_duplicate: Literal["error", "first", "last", "mean"] = Field(
        "error", description="A second rating of one item by one annotator: error, keep the first or the last, "
        "or average them."
    )
    unmapped_label: Literal["error", "missing"] = Field(
        "error", description="A rating cell that is not a label (or number): error, or count it as missing."
    )
    meta_roles: dict[str, str] = Field(
        default_factory=dict, description="role -> item column, for the roles in META_ROLES."
    )
    meaning: dict[str, str] | None = Field(
        None, description="What the low and high ends of the ratings stand for: {low: safe, high: unsafe}."
    )

    @field_validator("meaning", mode="before")
    @classmethod
    def _meaning_pairs(cls, value: Any) -> Any:
        if isinstance(value, str):
            pairs = dict(part.partition("=")[::2] for part in value.split(",") if part.strip())
            value = {k.strip(): v.strip() for k, v in pairs.items()}
        if value is not None:
            if not isinstance(value, dict) or set(value) != {"low", "high"} or not all(
                    isinstance(v, str) and v.strip() and len(v) <= 40 for v in value.values()):
                raise ValueError("expected low=WORD,high=WORD, as in low=safe,high=unsafe")
        return value

    @field_validator("meta_roles", mode="before")
    @classmethod
    def _roles_from_pairs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            out: dict[str, str] = {}
            for pair in value:
                role, sep, column = str(pair).partition("=")
                if not sep or not role.strip() or not column.strip():
                    raise ValueError(f"expected ROLE=COLUMN, got {str(pair)!r}")
                out[role.strip()] = column.strip()
            return out
        return value

    @field_validator("meta_roles")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for role in value:
            if role not in META_ROLES:
                raise ValueError(f"unknown role {role!r}; the roles are: {', '.join(META_ROLES)}")
        return value

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("item_meta_cols", "attribute_cols", mode="before")
    @classmethod
    def _names_from_string(cls, value: Any) -> Any:
        return _split_names(value)

    @field_validator("missing_labels", mode="before")
    @classmethod
    def _missing_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return ["" if v is None else str(v) for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> ImportSpec:
        if self.ratings_file is None and self.items_file is None:
            raise ValueError("give ratings_file, items_file, or both")
        if (self.text_col is None) == (self.conversation_col is None):
            raise ValueError("give exactly one of text_col (plain text) and conversation_col (turns)")
        if self.ratings_file is not None:
            if self.layout == "long" and not self.rating_cols:
                raise ValueError("layout 'long' needs rating_cols (the column(s) holding the ratings)")
            if self.layout == "wide" and not self.annotator_columns:
                raise ValueError(
                    "layout 'wide' needs annotator_columns (a list of columns or a pattern like 'rater_*')"
                )
        if isinstance(self.annotator_columns, str) and is_regex(self.annotator_columns.strip()):
            compile_column_regex(self.annotator_columns)
        if self.layout == "wide" and self.rating_cols:
            raise ValueError("layout 'wide' takes annotator_columns and dimension, not rating_cols")
        columns = self.rating_columns()
        dims = list(columns.values())
        if len(set(dims)) != len(dims):
            raise ValueError(f"rating_cols: two columns give the same dimension ({', '.join(dims)})")
        for dim in dims:
            if not dim.strip() or len(dim) > 200:
                raise ValueError(f"rating_cols: bad dimension name {dim!r}")
        try:
            resolve_label_maps(self.label_map, self.dimensions())
        except ValueError as exc:
            raise ValueError(f"label_map: {exc}") from None
        if self.model_rating_cols:
            if len(self.dimensions()) != 1:
                raise ValueError(f"model_rating_cols: a model's labels are read as ratings of the dataset's one "
                                 f"dimension; this import has {len(self.dimensions())}")
            for rater, column in self.model_rating_cols.items():
                if not rater.strip() or len(rater) > 200 or not column.strip():
                    raise ValueError(f"model_rating_cols: bad rater name or column {rater!r}={column!r}")
        return self

    def rating_columns(self) -> dict[str, str]:
        """Long layout: column -> dimension."""
        cols = self.rating_cols
        if cols is None or self.layout == "wide":
            return {}
        if isinstance(cols, str):
            cols = _split_names(cols)
        if isinstance(cols, list):
            return {c: c for c in cols}
        return dict(cols)

    def dimensions(self) -> list[str]:
        if self.layout == "wide":
            return [self.dimension]
        return list(self.rating_columns().values())

    def label_maps(self) -> dict[str, LabelMap]:
        return resolve_label_maps(self.label_map, self.dimensions())


def spec_from_mapping(data: dict[str, Any], base_dir: Path | None = None) -> ImportSpec:
    """An ``ImportSpec`` from plain data; relative file paths are taken from ``base_dir``. A bad spec
    raises ``DatasetImportError`` with one line naming the field."""
    data = dict(data)
    if base_dir is not None:
        for key in ("ratings_file", "items_file", "annotators_file"):
            if data.get(key) is not None and not Path(str(data[key])).is_absolute():
                data[key] = Path(base_dir) / str(data[key])
    try:
        return ImportSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "".join(f"{p}: " for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise DatasetImportError(one_line(f"import spec: {field}{message}{more}")) from None


def load_import_spec(path: Path | str, **overrides: Any) -> ImportSpec:
    """Read an ``import.yaml`` (fields of ``ImportSpec``; file paths relative to the YAML's folder)."""
    path = Path(path)
    try:
        data = safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetImportError(f"{path}: cannot read import spec ({one_line(str(exc))})") from None
    if not isinstance(data, dict):
        raise DatasetImportError(f"{path}: expected a mapping of ImportSpec fields")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return spec_from_mapping(data, base_dir=path.parent)
    except DatasetImportError as exc:
        raise DatasetImportError(f"{path}: {exc}") from None
