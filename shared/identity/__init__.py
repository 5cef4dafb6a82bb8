"""Who may act: tenants, agents, roles and permissions, API keys, credentials and authentication."""
