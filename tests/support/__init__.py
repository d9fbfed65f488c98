"""What the tests build on: a toy kind of job, small models and data."""
