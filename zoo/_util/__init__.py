"""Small helpers every group shares: atomic writes, safe paths, redaction, units, progress sinks,
runtime log control. Private: nothing here is API, and nothing here imports another group."""
