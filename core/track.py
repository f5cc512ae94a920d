"""``python -m core.track`` runs ``core.store.track``."""
import sys

from core.store.track import main

if __name__ == "__main__":
    sys.exit(main())
