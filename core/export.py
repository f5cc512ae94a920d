"""``python -m core.export`` (as cards and docs write it) runs ``core.store.export``."""
import sys

from core.store.export import main

if __name__ == "__main__":
    sys.exit(main())
