"""`python -m badged.demo`: run the daemon on the demo school (see `badged.demo.runner`)."""

import sys

from .runner import main

sys.exit(main())
