import sys

from dlbench.cli.main import main

sys.exit(main())
