"""Images and labelled sets: decoding, TF-slim preprocessing, the ImageNet labels and synsets,
and the data-set layouts `eval` reads. The package data (label lists) lives here too."""
