"""The job system: requests in, finished and stored images out, across any number of GPU workers.

Client side (torch-free; the bot, the CLI and the web playground use only ``tasks.client``):
    client.py     JobClient: submit, follow-up, cancel, get, list, position/ETA, artifacts, events
    store.py      job records, status changes and per-user admission in Redis (atomic Lua scripts)
    events.py     durable job events on a Redis Stream, read with consumer groups
    storage.py    artifacts on S3 (boto3) or a local folder, with retries
    routing.py    queues, priorities and time limits
    celery_app.py the Celery configuration both sides share

Worker side (imports the engine, lazily, once per process):
    worker.py     the Celery task and the JobRunner that renders, stores and finishes a job
"""
