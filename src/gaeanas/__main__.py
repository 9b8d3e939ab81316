"""`python -m gaeanas`: the command line (also what torchrun and worker processes start)."""
import sys

from .cli import main

sys.exit(main())
