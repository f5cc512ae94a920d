"""``python -m core.pretrain`` (as cards and docs write it) runs ``core.ssl.pretrain``."""
import sys

from core.ssl.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
