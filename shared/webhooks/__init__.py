"""Outgoing webhooks: endpoints, signing, the SSRF guard, the delivery engine and its sweeper.

One module per job: ``signing`` (Standard Webhooks signatures and secrets),
``ssrf`` (which addresses may be reached), ``transport`` (an httpx client that
connects only to vetted addresses), ``schedule`` (when to retry), ``delivery``
(claim, send, record), ``fanout`` (delivery rows for an event), ``endpoints``
(the API's services), ``sweeper`` (scheduler jobs), ``views`` and ``catalogue``.
"""
