"""AI agents: who owns a conversation, what the agent knows, how a reply is made and handed off.

Modules: ``retrieval`` ranks an agent's knowledge for a question (the contract the reply
path and the test endpoint share); ``ownership`` decides which agent answers a
conversation now; ``replies`` schedules a reply (the dispatch target, settle window,
sweeper); ``generation`` claims, prepares, calls the model off-thread and settles it;
``prompt`` builds the prompt and its injection defences; ``handoff`` decides and performs
handoffs to humans; ``usage`` counts replies, tokens and cost; ``trial`` is the test
endpoint's reply; ``providers`` are the models (``offline`` and ``openai``).
"""
