"""``python -m bot.cli``: the ``dreamloom`` command line."""

from bot.cli.main import main

raise SystemExit(main())
