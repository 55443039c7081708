import sys

from vectoros.cli import main

sys.exit(main())
