"""WhatsApp message templates: our copy of what Meta holds per WhatsApp Business Account.

- :mod:`.components`: the pure rules (a new template's components; the parameters a
  template send must give);
- :mod:`.meta`: the Graph calls (list with paging, create) and how Meta's errors answer;
- :mod:`.catalogue`: list, get, create (submitted to Meta inline), local delete, header media;
- :mod:`.sync`: ``sync_wa_templates``' work and the scheduler's claim of due accounts;
- :mod:`.review`: review results from the Meta webhook (``message_template_status_update``);
- :mod:`.sending`: the check a template send passes before any call to Meta.
"""
