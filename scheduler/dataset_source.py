"""A campaign's ``dataset_import``: the import YAML that creates its dataset when the database does not have
it yet, so a bundled example runs with one command. An existing dataset of that name is used as it is."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.models.dataset_import import import_dataset
from accord.models.import_formats import DatasetImportError
from accord.models.import_spec import load_import_spec
from accord.models.projects import owner_id
from accord.models.schema import Dataset
from accord.scheduler.campaign_spec import CampaignSpec


class DatasetSourceError(ValueError):
    """The campaign's dataset_import cannot be read or does not create the campaign's dataset."""


def ensure_dataset(engine: Engine, spec: CampaignSpec, project_id: int | None = None) -> bool:
    """Import ``spec.dataset_import`` if the dataset ``spec.dataset`` is missing from the project (None: the
    ``local`` project); True when it imported."""
    if not spec.dataset_import:
        return False
    project_id = owner_id(engine, project_id)
    with Session(engine) as session:
        q = select(col(Dataset.id)).where(col(Dataset.name) == spec.dataset, col(Dataset.project_id) == project_id)
        if session.execute(q).first() is not None:
            return False

    try:
        import_spec = load_import_spec(spec.dataset_import, project_id=project_id)
    except DatasetImportError as e:
        raise DatasetSourceError(f"dataset_import: {e}") from None
    if import_spec.name != spec.dataset:
        raise DatasetSourceError(f"dataset_import: {spec.dataset_import} creates dataset {import_spec.name!r}, "
                                 f"but the campaign's dataset is {spec.dataset!r}")
    try:
        import_dataset(engine, import_spec)
    except DatasetImportError as e:
        raise DatasetSourceError(f"dataset_import: {e}") from None
    return True
