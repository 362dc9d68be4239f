"""The web playground: a page that looks and works like a Discord channel with the dreamloom bot.

``app.py`` is the aiohttp application (the page, a JSON API over ``tasks.client.JobClient``, live events),
``jobviews.py`` what a job message shows, ``server.py`` how it is served; ``static/`` holds the page
(plain HTML, CSS and JavaScript: no build step).
"""
