import sys

from .peer import main

sys.exit(main())
