"""Customer satisfaction surveys: sent on resolve or by an agent, rated once through a token."""
