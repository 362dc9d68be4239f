"""The job system: requests in, finished and stored images out, across any number of GPU workers.

Client side (torch-free; every front door uses only ``tasks.client``):
    client.py         JobClient: submit, follow-up, cancel, get, list, position/ETA, artifacts, events
    records.py        the job record (a Redis hash) and new job ids
    job_store.py      job records, status changes and per-user admission in Redis (atomic Lua scripts)
    events.py         durable job events on a Redis Stream, read with consumer groups
    file_storage.py   the files of each job (images, grid, job.json) on S3 (boto3) or a local folder
    artifacts.py      a result as those files: encoding, job.json, upload order
    routing.py        queues, priorities and time limits
    celery_app.py     the Celery configuration both sides share
    settings.py       the job system's environment variables

Worker side (imports the engine, once per process):
    worker.py         the Celery task and the JobRunner that renders, stores and finishes a job; one engine
                      shared by the pool's threads under a render lock (render one job, encode another)
    celery_worker.py  the app ``celery -A tasks.celery_worker worker`` runs, with logging, metrics, heartbeat
    warm_start.py     loading and warming the served models before consuming; taking back a crash's jobs
    deadlines.py      a job's time limit, kept by the worker: load time not counted, a watchdog for hangs
    worker_process.py the worker's command line, and the supervisor that restarts it after a crash
    fetch.py          a job's image prompts: checked, decoded within limits, kept in storage next to the job
    safe_fetch.py     downloading a member's URL: allowed hosts, public addresses only, one deadline and budget

One machine (``dreamloom up`` and a CLI command with nothing running):
    embedded_redis.py a private redis-server with its data in a folder
    processes.py      child processes that stop in order and never outlive their parent

Operations: health.py (checks in plain words), metrics.py (Prometheus), ops_server.py (/metrics, /healthz
for processes without a web server), logs.py (the job id on every log line).
"""
