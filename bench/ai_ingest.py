"""Knowledge ingestion speed: pages per second for a 200-page PDF.

What it does, in one run:

1. writes a ``--pages``-page PDF (default 200) of support-manual text, ~45 lines a page,
   with pypdf's object model (tests/ai_knowledge/documents.py): no binary is committed;
2. baseline, in the same run: pypdf's own text extraction of every page, the floor of
   anything built on it;
3. ``parse + chunk``: :func:`shared.ai.knowledge.parsing.parse` and
   :func:`shared.ai.knowledge.chunking.chunk`, the CPU part of ingestion;
4. ``ingest``: the worker's whole job in this process (``ingestion.ingest``): claim the
   source, read the stored file, parse, chunk, replace the chunks in PostgreSQL (tsvector
   computed on insert, GIN and trigram indexes kept), mark it ready. Run ``--rounds``
   times by reprocessing the same source, so each round also deletes the last one's
   chunks.

Figures are wall-clock pages per second (median of the rounds) and the ratio to the
baseline. Target: at least 20 pages/s end to end (a 200-page manual in 10 s).

Run (PostgreSQL on 127.0.0.1)::

    .venv/bin/python bench/ai_ingest.py
    .venv/bin/python bench/ai_ingest.py --pages 500 --rounds 5

Exit status: 0 the target passes, 1 it fails, 2 error.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.ai_retrieval import TextMaker

GOAL_PAGES_PER_SECOND = 20.0


def manual(pages: int, seed: int) -> bytes:
    from tests.ai_knowledge.documents import pdf

    maker = TextMaker(seed, vocabulary_size=3000)
    content = []
    for number in range(pages):
        lines = [f"Chapter {number // 10 + 1}, page {number + 1}"]
        while len(lines) < 45:
            sentence = maker.sentence()
            while sentence:  # ~95 characters a line, cut on spaces
                cut = sentence[:95].rsplit(" ", 1)[0] if len(sentence) > 95 else sentence
                lines.append(cut)
                sentence = sentence[len(cut) :].strip()
        content.append(lines[:45])
    return pdf(content)


def _rate(pages: int, seconds: list[float]) -> float:
    return pages / statistics.median(seconds)


def baseline(data: bytes, rounds: int) -> list[float]:
    from pypdf import PdfReader

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        reader = PdfReader(io.BytesIO(data))
        for page in reader.pages:
            page.extract_text()
        times.append(time.perf_counter() - started)
    return times


def parse_and_chunk(data: bytes, rounds: int) -> tuple[list[float], int]:
    from shared.ai.knowledge import chunking, formats, parsing

    times, chunks = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        chunks = len(chunking.chunk(parsing.parse(formats.PDF, data)))
        times.append(time.perf_counter() - started)
    return times, chunks


def end_to_end(data: bytes, rounds: int) -> tuple[list[float], int]:
    """The worker's job, in this process, on a stored file (then reprocessed)."""
    from sqlalchemy import select, text, update

    from shared.ai.knowledge import ingestion
    from shared.channels.media_storage import media_key, stage, storage
    from shared.db import session_scope
    from shared.identity.tenants import register_tenant
    from shared.models import KnowledgeSource, MediaFile

    with session_scope() as session:
        tenant = register_tenant(
            session,
            organization_name="Ingest bench",
            full_name="Bench Admin",
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
            password="correct horse battery",
        ).tenant
        agent_id = uuid.uuid4()
        session.execute(
            text("INSERT INTO ai_agents (id, tenant_id, name) VALUES (:a, :t, 'Bench')"),
            {"a": agent_id, "t": tenant.id},
        )
        staged = stage(io.BytesIO(data), max_bytes=len(data) + 1)
        key = media_key(tenant.id, staged.sha256)
        storage().put(key, staged.path, "application/pdf")
        staged.discard()
        media = MediaFile(
            tenant_id=tenant.id,
            source="upload",
            storage_backend=storage().backend,
            storage_key=key,
            mime_type="application/pdf",
            size=len(data),
            filename="manual.pdf",
            sha256=staged.sha256,
        )
        session.add(media)
        session.flush()
        source = KnowledgeSource(
            tenant_id=tenant.id,
            ai_agent_id=agent_id,
            kind="file",
            title="manual.pdf",
            media_id=media.id,
        )
        session.add(source)
        session.flush()
        source_id = source.id
    times = []
    for _ in range(rounds):
        with session_scope() as session:  # what reprocess does
            session.execute(
                update(KnowledgeSource)
                .where(KnowledgeSource.id == source_id)
                .values(status="pending", attempts=0)
            )
        started = time.perf_counter()
        outcome = ingestion.ingest(source_id)
        times.append(time.perf_counter() - started)
        if outcome is not ingestion.Outcome.READY:
            raise common.BenchError(f"ingestion ended {outcome}")
    with session_scope() as session:
        chunks = session.scalar(
            select(KnowledgeSource.chunk_count).where(KnowledgeSource.id == source_id)
        )
    return times, chunks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, env: common.BenchEnv) -> int:
    media_root = tempfile.mkdtemp(prefix="omnistream-bench-media-")
    os.environ["MEDIA_ROOT"] = media_root
    with common.Bench("ai_ingest", env):
        started = time.perf_counter()
        data = manual(args.pages, args.seed)
        print(
            f"[ai_ingest] {args.pages}-page PDF, {len(data) / 1e6:.1f} MB,"
            f" written in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        floor = baseline(data, args.rounds)
        cpu, chunks = parse_and_chunk(data, args.rounds)
        whole, stored = end_to_end(data, args.rounds)
        base = statistics.median(floor)
        rows = [
            ("baseline: pypdf extract_text", _rate(args.pages, floor), 1.0, "-"),
            ("parse + chunk", _rate(args.pages, cpu), statistics.median(cpu) / base, chunks),
            (
                "ingest (worker job, PostgreSQL)",
                _rate(args.pages, whole),
                statistics.median(whole) / base,
                stored,
            ),
        ]
        common.print_table(
            f"ingesting a {args.pages}-page PDF (median of {args.rounds} rounds)",
            ["step", "pages/s", "time / baseline", "chunks"],
            [(name, common.fmt(rate), f"{ratio:.2f}x", n) for name, rate, ratio, n in rows],
        )
        rate = _rate(args.pages, whole)
        passed = common.print_targets(
            "targets",
            [
                common.Target(
                    "ingest pages/s",
                    common.fmt(rate),
                    f">= {GOAL_PAGES_PER_SECOND:.0f}",
                    rate >= GOAL_PAGES_PER_SECOND,
                )
            ],
        )
        common.write_json(
            args.json,
            {"pages": args.pages, "baseline": floor, "parse_chunk": cpu, "ingest": whole},
        )
    return common.EXIT_PASS if passed else common.EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    return common.run_main(parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
