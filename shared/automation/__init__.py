"""Automation rules, the pure part: attributes, condition trees, actions and templates.

Nothing in this package does I/O. The automation service (API, evaluator worker) builds the
facts of an event and calls :func:`shared.automation.engine.evaluate`; dry-run calls the very
same function, so a dry-run cannot disagree with what the worker would do.
"""
