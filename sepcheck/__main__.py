"""``python -m sepcheck ...`` (what ``torchrun -m sepcheck ...`` runs): the ``sepcheck`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="sepcheck")
