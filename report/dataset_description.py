"""A stored dataset's description (``accord describe``, the API's dataset description and the dashboard's
dataset page): its ratings of one dimension loaded from the database, described by
`accord.analysis.describe.describe_ratings`, with what the import recorded (the scale, what it dropped)."""

from __future__ import annotations

from typing import Any

from accord.analysis.describe import DescribeOptions, describe_ratings
from accord.models.run_frames import DatasetFramesError, load_dataset_frames
from accord.models.projects import owner_id
from accord.models.schema import Dataset
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col


def import_info(engine: Engine, dataset: str | int, project_id: int | None = None) -> dict[str, Any]:
    """What the import recorded about the dataset (scales, what it dropped); empty for older datasets."""
    if isinstance(dataset, int) or str(dataset).isdigit():
        q = select(col(Dataset.import_info)).where(col(Dataset.id) == int(dataset))
    else:
        q = select(col(Dataset.import_info)).where(col(Dataset.name) == str(dataset))
        q = q.where(col(Dataset.project_id) == owner_id(engine, project_id))
    with engine.connect() as conn:
        info = conn.execute(q).scalar()
    return dict(info or {})


def describe_dataset(engine: Engine, dataset: str | int, dimension: str | None = None,
                     options: DescribeOptions | None = None, project_id: int | None = None) -> dict[str, Any]:
    """The description as JSON-safe data. Raises DatasetFramesError for an unknown dataset or dimension or a
    dimension without ratings, ValueError for options that do not fit the data (both name the option)."""
    frames = load_dataset_frames(engine, dataset, dimension, project_id=project_id)
    if frames.human.empty:
        raise DatasetFramesError(f"dataset {dataset!r} has no ratings of dimension {frames.dimension!r}")
    data = describe_ratings(frames.human, frames.annotators, options)
    info = import_info(engine, dataset, project_id)
    return {"dataset": dataset, "dimension": frames.dimension,
            "scale": (info.get("scales") or {}).get(frames.dimension),
            "dropped_at_import": info.get("dropped") or {}, **data}
