"""`python -m badged.testing.crous_peer`: serve a peer until interrupted."""

import sys

from .standalone import main

sys.exit(main())
