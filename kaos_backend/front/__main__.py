import sys

from kaos_backend.front.main import main

sys.exit(main())
