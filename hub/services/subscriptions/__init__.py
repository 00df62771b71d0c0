"""FHIR R4 Subscriptions with rest-hook channels, delivered durably.

- ``criteria``: parse ``Type?params`` once, match a written resource's index rows in memory.
- ``observer``: the write observer that accepts Subscriptions and queues one notification per
  match in the writing transaction.
- ``delivery``: the background thread that sends them, in order per Subscription, with back-off.
"""
