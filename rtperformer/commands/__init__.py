"""Sub-commands of the ``rtperformer`` command line (see rtperformer/cli.py)."""
