"""The programme's budgets per measure and year (clause A2): a dated data file and its loader."""
