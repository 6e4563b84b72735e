"""The built-in workers of the seed's image pipelines: ``image_convert_resize``, ``upload_toS3`` and
``image_multiple_convert_resize``.

Each lives in its own module, which registers it with ``@worker_task`` when imported. Nothing is
imported here: ``kondukt_workers.registry`` imports a built-in's module the first time its name is looked
up, so a process running one worker never loads Pillow or boto3 for another.
"""
