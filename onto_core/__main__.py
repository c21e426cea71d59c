"""``python -m onto_core`` runs the ``onto`` command."""

from onto_core.cli import main

main()
