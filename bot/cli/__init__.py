"""The ``dreamloom`` command line (``bot.cli.main``; ``python -m bot.cli``).

Its modules:

    main.py         the commands and their options
    jobs.py         imagine, the buttons as commands, jobs, cancel: through the same job system as the bot
    progress.py     a job's progress bar
    service.py      ``up`` (everything on one machine), each part alone (worker, web, bot), and how a
                    command finds the running service
    settings.py     what the command line and ``up`` read from the environment
    environment.py  every variable dreamloom reads, for the deployment files
"""
