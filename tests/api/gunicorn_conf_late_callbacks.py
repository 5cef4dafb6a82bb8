"""The Procfile's gunicorn settings, with every request answered before its future's
done callback is attached: what happens when the main thread is descheduled between
``submit`` and ``add_done_callback`` on a busy host (the callback then runs at once, in
the main thread). Used by tests/api/test_gunicorn_worker.py to hold that window open.
"""

from concurrent import futures

from api.gunicorn_conf import *  # noqa: F403
from api.gunicorn_conf import post_worker_init as _post_worker_init


def post_worker_init(worker):
    _post_worker_init(worker)
    submit = worker.tpool.submit

    def submit_and_wait(fn, *args, **kwargs):
        future = submit(fn, *args, **kwargs)
        futures.wait([future], timeout=5)
        return future

    worker.tpool.submit = submit_and_wait
