"""Training and converting: `finetune`, its input pipelines and distribution strategies, and
`export` (SavedModel, float and full-integer TFLite)."""
