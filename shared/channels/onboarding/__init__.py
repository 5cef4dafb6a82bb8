"""Meta onboarding: connect WhatsApp (Embedded Signup), Instagram and Messenger accounts.

Each flow exchanges what Meta's login dialog gave the browser (an OAuth ``code``)
for tokens, subscribes our app to the account's webhooks, and only then creates the
integration account (credentials encrypted, ``integration_account.connected``
emitted) in the request's transaction: a failure at Meta leaves no row behind.

- :mod:`.meta_app`: the platform Meta app's settings and the configs the browser needs;
- :mod:`.oauth`: code exchange, long-lived tokens, what a token was granted, Pages;
- :mod:`.oauth_state`: the signed ``state`` binding a login to its admin, workspace, channel;
- :mod:`.whatsapp`: Embedded Signup completion and the number's health;
- :mod:`.instagram`, :mod:`.messenger`: OAuth connect, Page subscriptions, disconnect;
- :mod:`.persistent_menu`: a Page's Messenger menu;
- :mod:`shared.channels.meta_calls` (shared with the templates and the WhatsApp
  insights): one Graph call's failure as the API's answer (an invalid account token marks
  the account ``error``);
"""
