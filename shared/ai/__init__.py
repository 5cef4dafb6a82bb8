"""AI agents: who owns a conversation, what the agent knows, how a reply is made and handed off.

Modules: ``retrieval`` ranks an agent's knowledge for a question (the contract the reply
path and the test endpoint share).
"""
