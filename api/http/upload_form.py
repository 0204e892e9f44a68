"""The dashboard's dataset upload form: its fields are those of ``accord import`` (one text box per option,
written as on the command line), turned into the import fields the API's upload takes, so both go through
the same validation (``ImportSpec``, then the import itself)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accord.api.http.problems import invalid


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    flag: str          # the `accord import` option it mirrors
    help: str
    choices: tuple[str, ...] = ()


FIELDS: list[FormField] = [
    FormField("name", "Dataset name", "--name", "Unique in this project."),
    FormField("description", "Description", "", "Optional."),
    FormField("layout", "Layout", "--layout", "long: one row per item x annotator; wide: one row per item, one "
              "column per annotator.", ("long", "wide")),
    FormField("item_col", "Item id column", "--item-col", "Default item_id."),
    FormField("annotator_col", "Annotator id column", "--annotator-col", "Long layout; default annotator_id."),
    FormField("rating_cols", "Rating columns", "--rating-col", "Long layout: col or col=dimension, separated by "
              "commas."),
    FormField("annotator_columns", "Annotator columns", "--annotator-columns", "Wide layout: rater_*, a list, or "
              "re: and a regular expression."),
    FormField("dimension", "Dimension", "--dimension", "Wide layout: the dimension's name."),
    FormField("text_col", "Text column", "--text-col", "Plain-text content."),
    FormField("conversation_col", "Conversation column", "--conversation-col", "Lines SPEAKER: text, or a JSON "
              "list of turns."),
    FormField("response_col", "Response column", "--response-col", "Appended as the judged reply."),
    FormField("item_meta_cols", "Item metadata columns", "--meta-col", "Comma-separated."),
    FormField("attribute_cols", "Annotator attribute columns", "--attribute-col", "Comma-separated (gender, age, "
              "...)."),
    FormField("label_map", "Label map", "--label-map", "No=0, Unsure=0.5, Yes=1"),
    FormField("meta_roles", "Metadata roles", "--meta-role", "ROLE=COLUMN, comma-separated: category, "
              "expert_label, subject_model."),
    FormField("meaning", "Meaning of the scale", "--meaning", "low=safe,high=unsafe"),
    FormField("model_rating_cols", "Existing model ratings", "--model-rating-col", "name=column, comma-separated."),
    FormField("on_duplicate", "Repeated item x annotator", "--on-duplicate", "", ("error", "first", "last", "mean")),
    FormField("unmapped_label", "A cell that is no label", "--unmapped-label", "", ("error", "missing")),
    FormField("records_key", "JSON records key", "--records-key", "For a JSON file holding an object."),
    FormField("items_id_col", "Items file id column", "--items-id-col", "Default: the item id column."),
    FormField("annotators_id_col", "Annotators file id column", "--annotators-id-col",
              "Default: the annotator id column."),
]
CSRF_FIELD = "csrf"
TEXT_FIELDS = frozenset({CSRF_FIELD, *(f.name for f in FIELDS)})
PASSED_AS_IS = {"name", "description", "layout", "item_col", "annotator_col", "annotator_columns", "dimension",
                "text_col", "conversation_col", "response_col", "item_meta_cols", "attribute_cols", "label_map",
                "meta_roles", "meaning", "on_duplicate", "unmapped_label", "records_key", "items_id_col",
                "annotators_id_col"}


def _pairs(text: str, field: str, *, bare: bool) -> dict[str, str]:
    """``a=b, c`` -> {a: b, c: c} (``bare``: a name alone maps to itself, else it is an error)."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep and bare:
            value = key
        if not key.strip() or not value.strip():
            raise invalid(f"{field}: expected {'col or col=dimension' if bare else 'name=column'} separated by "
                          f"commas, got {part[:60]!r}", field=field)
        out[key.strip()] = value.strip()
    return out


def mapping_from_form(fields: dict[str, str]) -> dict[str, Any]:
    """The import fields of a submitted form (empty boxes left out, so the import's defaults apply)."""
    mapping: dict[str, Any] = {}
    for name in PASSED_AS_IS:
        value = (fields.get(name) or "").strip()
        if value:
            mapping[name] = value
    if (fields.get("rating_cols") or "").strip():
        mapping["rating_cols"] = _pairs(fields["rating_cols"], "rating_cols", bare=True)
    if (fields.get("model_rating_cols") or "").strip():
        mapping["model_rating_cols"] = _pairs(fields["model_rating_cols"], "model_rating_cols", bare=False)
    if "name" not in mapping:
        raise invalid("name: required (the dataset's name)", field="name")
    return mapping
