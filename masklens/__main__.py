"""``python -m masklens`` runs the ``masklens`` command (for ``torchrun ... -m masklens train``)."""

from masklens.commands import main

main()
