"""``python -m ghmbench`` runs the CLI (also under torchrun)."""

from ghmbench.cli import main

main()
