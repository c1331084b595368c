"""Running a restored model: `classify`, `eval` and `bench`."""
