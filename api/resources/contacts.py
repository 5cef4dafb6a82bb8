"""Contacts: list and search, read, correct, and their conversations."""

from __future__ import annotations

from api.endpoint import Plain, endpoint
from api.schemas.common import ListQuery, Page
from api.schemas.contacts import ContactListQuery, ContactUpdate
from shared.inbox import contacts
from shared.schemas.inbox import ContactView, ConversationView

TAGS = ("Contacts",)


class ContactsResource:
    @endpoint(
        "List contacts",
        query=ContactListQuery,
        response=Page[ContactView],
        description="`q` matches inside the name, phone or email (case-insensitive).",
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, query: ContactListQuery):
        page = contacts.list_contacts(req.context.db, ctx, **query.model_dump())
        return Plain({"items": page.items, "next_cursor": page.next_cursor})


class ContactResource:
    @endpoint("Get a contact by ID", response=ContactView, tags=TAGS)
    def on_get(self, req, resp, *, ctx, id):
        return Plain(contacts.get_item(req.context.db, ctx, id))

    @endpoint(
        "Update a contact",
        body=ContactUpdate,
        response=ContactView,
        description="Changes the fields sent; `tags` and `custom_attributes` replace the value.",
        tags=TAGS,
    )
    def on_patch(self, req, resp, *, ctx, id, body: ContactUpdate):
        return contacts.update_contact(req.context.db, ctx, id, body.model_dump(exclude_unset=True))


class ContactConversationsResource:
    @endpoint(
        "List conversations for a contact",
        query=ListQuery,
        response=Page[ConversationView],
        tags=TAGS,
    )
    def on_get(self, req, resp, *, ctx, id, query: ListQuery):
        page = contacts.list_contact_conversations(req.context.db, ctx, id, **query.model_dump())
        return {"items": page.items, "next_cursor": page.next_cursor}


ROUTES = [
    ("/api/contacts", ContactsResource()),
    ("/api/contacts/{id:uuid}", ContactResource()),
    ("/api/contacts/{id:uuid}/conversations", ContactConversationsResource()),
]
