"""The facts one application needs, as of a date, in one call and one snapshot (issue #16)."""
