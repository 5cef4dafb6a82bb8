"""Real local peers for channel tests: a fake Meta Graph API, an SMTP server, an S3 server.

Each is a real server on 127.0.0.1 with an ephemeral port, started by a fixture in
:mod:`tests.peers.fixtures`; a test folder imports the fixtures it needs into its
``conftest.py``.
"""
