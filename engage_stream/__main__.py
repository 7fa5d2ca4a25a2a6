import sys

from engage_stream.cli import main

sys.exit(main())
