"""``python -m estinet.train`` (also what ``torchrun ... -m estinet.train`` runs): the ``estinet train`` command.

Every process torchrun starts runs this with the same arguments; :mod:`estinet.train.distributed` reads its rank from
the environment.
"""

from __future__ import annotations

import sys

from estinet.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
