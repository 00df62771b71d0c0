"""Who may call the hub and what they may do: clients, tokens, scopes, rules (issue 8)."""
