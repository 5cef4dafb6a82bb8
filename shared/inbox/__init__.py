"""The inbox domain: conversations, messages, contacts, notes, quick replies, divisions."""
