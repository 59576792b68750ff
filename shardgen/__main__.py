"""``python -m shardgen`` runs the command line."""

from .cli import main

main()
