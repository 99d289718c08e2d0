"""Clause A2: the programme budget of each measure and year, held as a ceiling by the database.

The package: `endpoints.py` (approvals' reservations: reserve, release, list), `service.py` (the
budget as a ceiling: take, give back, reserve, consume, release), `reconciler.py` (releases
reservations no approval recorded), `repository.py` (all its SQL), `schemas.py`, `errors.py`.
The figures themselves are `policy/budgets.yaml`, loaded by `policy/budgets.py`.
"""
