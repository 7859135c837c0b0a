"""`python -m xmc_service` runs xmc-serve."""

from xmc_service.cli import main

raise SystemExit(main())
