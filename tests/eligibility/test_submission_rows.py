"""A submission's rows are plain dataclasses (issue #16: no ORM object on the submission path); `insert_submission`
writes one argument per column of the table from them, so they must have a field for every column it writes."""

from dataclasses import fields

import pytest

from services.eligibility.models import Application, Base, Decision
from services.eligibility.submission_sql import NewApplication, NewDecision


@pytest.mark.parametrize(("row", "model"), [(NewApplication, Application), (NewDecision, Decision)])
def test_a_field_for_every_column_but_the_identity(row: type, model: type[Base]) -> None:
    columns = {column.key for column in model.__table__.columns} - {"seq"}
    assert {field.name for field in fields(row)} == columns
