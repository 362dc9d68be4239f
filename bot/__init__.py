"""The front doors: each way people reach dreamloom, one wing each. None imports torch, diffusers or
transformers (an import-linter contract); all of them talk to the job system through ``tasks.client``.

    discord/   the Discord bot (discord.py 2.x): slash commands, buttons that work forever, reactions
    web/       the playground page, a Discord-like channel on localhost, and its JSON API
    cli/       the ``dreamloom`` command: jobs from a terminal, and ``up``, the one-machine supervisor that
               runs the job system, a worker, the playground and the bot together

Discord and the web never import each other; the command line imports both (``up`` runs them).
"""
