"""The `mobilenet-zoo` command line: a thin typer layer over the `zoo` library.

Installed as the package `mobilenet_zoo_cli` (see pyproject.toml) so it cannot
collide with other distributions' top-level `cli` packages.
"""
