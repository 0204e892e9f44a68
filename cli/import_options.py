"""The options of ``accord import``, each declared once as a Typer ``Annotated`` alias (its flag, type and
help text), and ``IMPORT_FLAGS``, the option that sets each ``ImportSpec`` field, so that errors speak of
what the user typed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from accord.models.import_spec import META_ROLES

# ImportSpec field -> the option that sets it.
IMPORT_FLAGS = {
    "ratings_file": "RATINGS (the ratings file argument)", "items_file": "--items", "annotators_file": "--annotators",
    "layout": "--layout", "item_col": "--item-col", "annotator_col": "--annotator-col", "rating_cols": "--rating-col",
    "annotator_columns": "--annotator-columns", "dimension": "--dimension", "text_col": "--text-col",
    "conversation_col": "--conversation-col", "response_col": "--response-col",
    "response_speaker": "--response-speaker", "item_meta_cols": "--meta-col", "attribute_cols": "--attribute-col",
    "label_map": "--label-map", "replace": "--replace", "records_key": "--records-key",
    "items_id_col": "--items-id-col", "annotators_id_col": "--annotators-id-col", "on_duplicate": "--on-duplicate",
    "unmapped_label": "--unmapped-label", "meta_roles": "--meta-role", "name": "--name", "meaning": "--meaning",
}


def _roles_help() -> str:
    return "; ".join(f"{role}: {meaning}" for role, meaning in META_ROLES.items())


Ratings = Annotated[Optional[Path], typer.Argument(help="Ratings file (CSV, JSONL or Parquet).")]
Name = Annotated[Optional[str], typer.Option("--name", "-n", help="Dataset name.")]
Spec = Annotated[Optional[Path], typer.Option(
    "--spec", help="An import YAML (fields as below); options override it.")]
Items = Annotated[Optional[Path], typer.Option("--items", help="Items file (text/conversations, metadata).")]
Annotators = Annotated[Optional[Path], typer.Option("--annotators", help="Annotators file (attributes).")]
Layout = Annotated[Optional[str], typer.Option(
    help="long (row per item x annotator) or wide (column per annotator).")]
ItemCol = Annotated[Optional[str], typer.Option(help="Item id column.")]
AnnotatorCol = Annotated[Optional[str], typer.Option(help="Annotator id column.")]
RatingCol = Annotated[Optional[list[str]], typer.Option(
    "--rating-col", help="Rating column (repeat; 'col=dimension' renames).")]
AnnotatorColumns = Annotated[Optional[str], typer.Option(
    help="Wide layout: annotator columns (list, glob or re:...).")]
Dimension = Annotated[Optional[str], typer.Option(help="Wide layout: the dimension's name.")]
TextCol = Annotated[Optional[str], typer.Option(help="Plain-text content column.")]
ConversationCol = Annotated[Optional[str], typer.Option(
    help="Conversation column ('SPEAKER: text' lines or JSON turns).")]
ResponseCol = Annotated[Optional[str], typer.Option(
    help="The final reply being judged, appended as the last turn.")]
ResponseSpeaker = Annotated[Optional[str], typer.Option(help="Speaker label of the response turn.")]
MetaCol = Annotated[Optional[list[str]], typer.Option("--meta-col", help="Item metadata column (repeat).")]
AttributeCol = Annotated[Optional[list[str]], typer.Option(
    "--attribute-col", help="Annotator attribute column (repeat).")]
LabelMap = Annotated[Optional[str], typer.Option("--label-map", help="e.g. 'No=0, Unsure=0.5, Yes=1'.")]
ModelRatingCol = Annotated[Optional[list[str]], typer.Option(
    "--model-rating-col", help="An existing judge model's labels: 'name=column' (repeat); the model "
                               "enters every metric as a rater (template 'imported').")]
Replace = Annotated[bool, typer.Option("--replace", help="Replace a dataset of the same name.")]
AnswerJudgments = Annotated[Optional[Path], typer.Option(
    "--answer-judgments", help="People's ratings/ranks of subjects' answers, added to the existing "
                               "dataset --name (see --answer-judgment-cols).")]
AnswerJudgmentCols = Annotated[Optional[str], typer.Option(
    "--answer-judgment-cols", help="Columns of --answer-judgments: e.g. "
                                   "'item=item_id,subject=model,annotator=rater,rating=harm,rank=rank' or "
                                   "'answer=answer_id,...'; defaults item=item_id, subject=subject, "
                                   "annotator=annotator_id.")]
RecordsKey = Annotated[Optional[str], typer.Option(
    "--records-key", help="JSON files holding an object: the key of the list of records (dotted for "
                          "nested, e.g. data.rows).")]
ItemsIdCol = Annotated[Optional[str], typer.Option(
    "--items-id-col", help="Item id column of the items file (default: --item-col).")]
AnnotatorsIdCol = Annotated[Optional[str], typer.Option(
    "--annotators-id-col", help="Annotator id column of the annotators file (default: --annotator-col).")]
OnDuplicate = Annotated[Optional[str], typer.Option(
    "--on-duplicate", help="A repeated item x annotator rating: error (default), first, last or mean.")]
UnmappedLabel = Annotated[Optional[str], typer.Option(
    "--unmapped-label", help="A cell that is no label (e.g. a sentence in a label column): error "
                             "(default) or missing.")]
Meaning = Annotated[Optional[str], typer.Option(
    "--meaning", help="What the low and high ratings stand for, e.g. 'low=compliant,high=refusing' (the "
                      "report's wording follows).")]
MetaRole = Annotated[Optional[list[str]], typer.Option(
    "--meta-role", help="ROLE=COLUMN: item metadata that drives "
                        "an analysis (repeat). Roles: " + _roles_help() + ".")]
