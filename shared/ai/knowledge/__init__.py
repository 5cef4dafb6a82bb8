"""An AI agent's knowledge: sources (text, URLs, files), their chunks, and QnA pairs.

Modules, each with one job: ``formats`` tells what a file is from its bytes;
``parsing`` turns bytes into text; ``chunking`` cuts text into overlapping passages;
``fetching`` reads a URL through the SSRF guard; ``ingestion`` is the worker's job
(claim, parse, replace the chunks atomically, record the outcome); ``embedding``
stores provider vectors; ``sources`` and ``qna`` are the API's services; ``queue``
hands ids to the workers after commit and re-drives what a lost message left behind.
"""
