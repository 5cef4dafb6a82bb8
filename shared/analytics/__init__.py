"""Analytics: rollups kept current from events, the reports read from them, the reconcile.

- :mod:`~shared.analytics.intake`: the ``dispatch_event`` target queuing events to count;
- :mod:`~shared.analytics.rollup`: the actor's work, counting queued events once each;
- :mod:`~shared.analytics.reports`: the ``/api/analytics/*`` answers, from the rollups only;
- :mod:`~shared.analytics.reconcile`: the nightly recount of past days from the source rows;
- :mod:`~shared.analytics.wa_insights`: WhatsApp insights from Meta's Graph API, cached.
"""
