"""The `mobilenet-zoo` command line: a thin typer layer over the `zoo` library.

Installed as the package `mobilenet_zoo_cli` (see pyproject.toml) so it cannot
collide with other distributions' top-level `cli` packages.
"""

# Set by the console script (``launch.main``) before the app is imported, when the
# command line runs one of the light commands: then only their module is loaded.
LIGHT_ONLY = False
# Set likewise when the command line runs a command that is loaded alone (``eval``):
# only that command's module is imported, not fetch/restore/finetune...
ONLY_COMMAND = None
